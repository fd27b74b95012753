"""DHCPv6 (RFC 8415) answered by each chassis' agent for its own ports, as Neutron's dnsmasq
answers: a port's address on a subnet with `ipv6_address_mode` dhcpv6-stateful (or no mode at
all: dnsmasq's "static" range), and the other configuration (DNS servers, domain search list)
on those and on dhcpv6-stateless subnets; slaac subnets get nothing (their VMs configure
themselves from the router's advertisements: ra.py).

Client messages go to ff02::1:2, UDP 547: multicast, which XDP passes for a port without port
security (a port with it sends no IPv6 at all: docs/datapath.md), and br-int's table 18 hands
them to the agent from each local tap that has a DHCPv6 subnet (packet-in; not flooded, as the
DHCPv4 punt path consumes requests). The server is the network's DHCP port: its MAC, its
link-local address (fe80:: EUI-64) and a DUID-LL of its MAC; answers go straight into the tap,
to the client's address. Lease times are Neutron's dhcp_lease_duration (T1 half, T2 4/5)."""
from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from typing import Iterable

from dfxdp.controller.binding import tap_name
from dfxdp.controller.ovs.flows import Flow, goto, to_controller
from dfxdp.nb.ipam import eui64

from .. import dhcp6_packet as d6
from .base import App, LocalView
from .dhcp import DEFAULT_LEASE, DHCP_OWNER, host_identity
from .flood import TABLE_FLOOD
from .tap_sender import TapSender

log = logging.getLogger(__name__)

TABLE_DHCP6 = 18  # what the ra app's table passes on: DHCPv6 client messages to the agent
STATEFUL = "dhcpv6-stateful"
INFORMATION_MODES = {STATEFUL, "dhcpv6-stateless"}
ADDRESS_REPLIES = {d6.SOLICIT: d6.ADVERTISE, d6.REQUEST: d6.REPLY, d6.RENEW: d6.REPLY, d6.REBIND: d6.REPLY}


def _stateful(subnet: dict) -> bool:
    """dnsmasq's static DHCPv6 range: the stateful mode, or no IPv6 mode at all."""
    return subnet.get("ipv6_address_mode") == STATEFUL or \
        not (subnet.get("ipv6_address_mode") or subnet.get("ipv6_ra_mode"))


def dhcp6_subnets(view: LocalView, port: dict) -> list[tuple[dict, str]]:
    """(subnet, the port's address there) for the port's IPv6 subnets DHCPv6 serves; none for a
    port with port security."""
    if port.get("port_security_enabled"):
        return []
    found = []
    for fixed in port.get("fixed_ips") or []:
        subnet = view.subnets.get(fixed["subnet_id"])
        if subnet and subnet.get("ip_version") == 6 and subnet.get("enable_dhcp") and \
                (_stateful(subnet) or subnet.get("ipv6_address_mode") in INFORMATION_MODES):
            found.append((subnet, fixed["ip_address"]))
    return found


class Dhcp6App(App):
    name = "dhcp6"
    depends = ()  # no map entries: nothing a pass derives
    tables = (TABLE_DHCP6,)
    flow_cookie = 6

    def __init__(self, lease: int = DEFAULT_LEASE, sender=None) -> None:
        self.lease = lease
        self.stats: Counter[str] = Counter()  # answers by type, unanswered messages by why
        self._sender = TapSender("DHCPv6 answer", sender)

    def flows(self, view: LocalView) -> Iterable[Flow]:
        match = {"eth_type": 0x86DD, "ip_proto": 17, "udp_dst": d6.SERVER_PORT}
        for port_id in sorted(view.local_ports):
            port, ofport = view.ports.get(port_id), view.ofports.get(tap_name(port_id))
            if port and ofport and dhcp6_subnets(view, port):
                yield Flow.of(TABLE_DHCP6, 100, {**match, "in_port": ofport}, [to_controller()])
        yield Flow.of(TABLE_DHCP6, 0, {}, [goto(TABLE_FLOOD)])

    def on_packet_in(self, view: LocalView, port_id: str | None, frame: bytes) -> bool:
        ifindex = view.local_ports.get(port_id or "")
        outcome, reply = self.answer(view, view.ports.get(port_id or ""), frame)
        self.stats[outcome] += 1
        if reply is not None and ifindex is not None:
            self._sender.send(ifindex, reply)
        return False

    def answer(self, view: LocalView, port: dict | None, frame: bytes) -> tuple[str, bytes | None]:
        """(outcome, the reply frame or None) for a client message from `port`."""
        try:
            client = d6.parse_client_message(frame)
        except d6.MalformedDhcp6 as exc:
            log.debug("DHCPv6: malformed frame: %s", exc)
            return "malformed", None
        if port is None or client.src_mac != port.get("mac_address"):
            return "unknown_client", None
        served = dhcp6_subnets(view, port)
        server = next((p for p in view.ports_on_network(port["network_id"]) if p.get("device_owner") == DHCP_OWNER),
                      None)
        if not served or server is None:
            return "dhcp_disabled", None
        server_id = d6.duid_ll(server["mac_address"])
        if client.server_id is not None and client.server_id != server_id:
            return "other_server", None  # the client chose another server
        if client.client_id is None and client.msg_type != d6.INFORMATION_REQUEST:
            return "malformed", None
        addresses = [(s, a) for s, a in served if _stateful(s)]
        options = (d6.option(d6.OPT_CLIENTID, client.client_id) if client.client_id else b"") + \
            d6.option(d6.OPT_SERVERID, server_id)
        if client.msg_type in ADDRESS_REPLIES:
            if not addresses:
                return "no_address", None  # a stateless subnet: the client asks for information only
            kind = ADDRESS_REPLIES[client.msg_type]
            if client.msg_type == d6.SOLICIT and client.rapid_commit:
                kind, options = d6.REPLY, options + d6.option(d6.OPT_RAPID_COMMIT, b"")
            address = addresses[0][1]
            for ia in client.ias:
                options += d6.ia_na(ia.iaid, self.lease // 2, self.lease * 4 // 5, address, self.lease, self.lease)
        elif client.msg_type == d6.CONFIRM:
            mine = {a for _, a in addresses}
            asked = [a for ia in client.ias for a in ia.addresses]
            kind = d6.REPLY
            options += d6.status_code(d6.SUCCESS if asked and set(asked) <= mine else d6.NOT_ON_LINK)
        elif client.msg_type in (d6.RELEASE, d6.DECLINE):
            log.info("DHCPv6 %s by port %s", "RELEASE" if client.msg_type == d6.RELEASE else "DECLINE", port["id"])
            kind, options = d6.REPLY, options + d6.status_code(d6.SUCCESS)  # the address stays the port's in NB
        elif client.msg_type == d6.INFORMATION_REQUEST:
            kind = d6.REPLY
        else:
            return "unsupported_type", None
        options += self._configuration(port, served)
        server_ip = eui64("fe80::/64", server["mac_address"])
        return {d6.ADVERTISE: "advertise"}.get(kind, "reply"), d6.reply_frame(server["mac_address"], server_ip,
                                                                                client, kind, options)

    @staticmethod
    def _configuration(port: dict, served: list[tuple[dict, str]]) -> bytes:
        """DNS servers (the subnets' IPv6 dns_nameservers) and the domain search list."""
        servers = [ipaddress.IPv6Address(d).packed for s, _ in served for d in s.get("dns_nameservers") or []
                   if ":" in d]
        out = d6.option(d6.OPT_DNS_SERVERS, b"".join(dict.fromkeys(servers))) if servers else b""
        _, domain = host_identity(port, served[0][1])
        return out + d6.option(d6.OPT_DOMAIN_LIST, d6.domain_list([domain]))
