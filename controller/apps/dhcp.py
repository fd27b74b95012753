"""DHCP answered from NB, as Neutron's DHCP agent (dnsmasq) answers.

stage_portsec punts a bound port's DHCP client frames (PUNT_DHCP); on_punt
checks the frame (controller/dhcp_packet.py), finds the port that sent it (the
ingress interface, and the client MAC must be the port's), the port's IPv4
address on a subnet with enable_dhcp and that subnet's DHCP port (device_owner
`network:dhcp`, created by the NB service), and answers out of the VM's port
from the DHCP port's MAC and address (the server identifier, option 54):

  DISCOVER -> OFFER, REQUEST -> ACK (NAK when the client asks for an address
  that is not its port's), INFORM -> ACK without a lease, RELEASE and DECLINE
  are counted (the address is the port's in NB: nothing to free).

Options: mask, broadcast address, router (the gateway), MTU (the network's),
DNS servers (the subnet's dns_nameservers, else the DHCP port's address, which
stage_dns answers on), hostname, domain and domain search list (option 119:
the domain, so a VM's resolver completes bare hostnames; from the port's
dns_assignment, else host-<ip-dashes> and openstacklocal), lease and its T1/T2, and classless
static routes (121, and 249 for Windows) when the subnet has host routes or
the network other subnets; then the port's extra_dhcp_opts, which replace the
option of the same number. Every frame not answered is counted by why.
"""
from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from typing import TYPE_CHECKING, Callable, Iterable

from dfxdp.datapath.libbpf import lib

from .. import dhcp_packet as dhcp
from .base import App, Entry, LocalView, mac_bytes

if TYPE_CHECKING:
    from ..punt import PuntedPacket

log = logging.getLogger(__name__)

DHCP_OWNER = "network:dhcp"
DEFAULT_LEASE = 86400       # seconds: Neutron's dhcp_lease_duration
DEFAULT_DOMAIN = "openstacklocal"  # Neutron's dns_domain default
BROADCAST = "255.255.255.255"
REPLY_TYPES = {dhcp.DISCOVER: dhcp.OFFER, dhcp.REQUEST: dhcp.ACK, dhcp.INFORM: dhcp.ACK}


def host_identity(port: dict, address: str) -> tuple[str, str]:
    """(hostname, domain) of `address` of `port`: its dns_assignment, else Neutron's defaults."""
    for a in port.get("dns_assignment") or []:
        if a.get("ip_address") == address and a.get("hostname"):
            fqdn = a.get("fqdn", "").rstrip(".")
            domain = fqdn[len(a["hostname"]) + 1:] if fqdn.startswith(a["hostname"] + ".") else ""
            return a["hostname"], domain or DEFAULT_DOMAIN
    return "host-" + address.replace(".", "-"), DEFAULT_DOMAIN


def extra_options(port: dict) -> tuple[dict[int, bytes], str]:
    """The port's IPv4 extra_dhcp_opts as {code: value} (they replace the answer's own option of
    that code, as dnsmasq's per-host options do) and the siaddr (`server-ip-address`, else
    0.0.0.0). One that cannot be encoded is skipped with a warning: NB takes any name, as Neutron."""
    options: dict[int, bytes] = {}
    siaddr = "0.0.0.0"
    for opt in port.get("extra_dhcp_opts") or []:
        if opt.get("ip_version", 4) != 4 or opt.get("opt_value") is None:
            continue
        try:
            code, value = dhcp.extra_option(opt["opt_name"], opt["opt_value"])
        except ValueError as exc:
            log.warning("port %s: extra_dhcp_opt %s=%r skipped: %s", port["id"], opt["opt_name"],
                        opt["opt_value"], exc)
            continue
        if code == dhcp.SIADDR:
            siaddr = value
        else:
            options[code] = value
    return options, siaddr


class DhcpApp(App):
    name = "dhcp"
    depends = ()  # no map entries: nothing a pass derives
    punt_reasons = (lib.PUNT_DHCP,)

    def __init__(self, lease: int = DEFAULT_LEASE, on_count: Callable[[str], None] = lambda outcome: None) -> None:
        self.lease = lease
        self.stats: Counter[str] = Counter()  # answers by type, unanswered frames by why
        self._on_count = on_count  # the same outcomes, to the agent's metrics

    def desired(self, view: LocalView) -> Iterable[Entry]:
        return ()  # no maps: stage_portsec punts every bound port's requests

    # ---- a punted frame ---------------------------------------------------------
    def on_punt(self, packet: "PuntedPacket") -> None:
        outcome, reply = self.answer(packet.frame, packet.ifindex, packet.view)
        self.stats[outcome] += 1
        self._on_count(outcome)
        if reply is not None:
            packet.reply(reply)

    def answer(self, frame: bytes, ifindex: int, view: LocalView | None) -> tuple[str, bytes | None]:
        """(outcome, the reply frame or None) for one client frame from interface `ifindex`."""
        try:
            client = dhcp.parse_request(frame)
        except dhcp.MalformedDhcp as exc:
            log.debug("DHCP: malformed frame from ifindex %d: %s", ifindex, exc)
            return "malformed", None
        request = client.message
        if request.op != dhcp.BOOTREQUEST:
            return "wrong_op", None
        if request.giaddr != "0.0.0.0":
            return "relayed", None  # the port's own request never crosses a relay
        port = self._port(view, ifindex) if view else None
        if port is None or request.chaddr != mac_bytes(port["mac_address"]) or client.src_mac != request.chaddr:
            return "unknown_client", None
        lease = self._lease_of(view, port)
        if lease is None:
            return "dhcp_disabled", None
        address, subnet, server = lease
        server_ip = next(f["ip_address"] for f in server["fixed_ips"] if f["subnet_id"] == subnet["id"])
        kind = request.message_type
        if kind in (dhcp.RELEASE, dhcp.DECLINE):
            log.info("DHCP %s of %s by port %s", "RELEASE" if kind == dhcp.RELEASE else "DECLINE",
                     request.ciaddr if kind == dhcp.RELEASE else request.address_option(dhcp.OPT_REQUESTED_IP),
                     port["id"])
            return "release" if kind == dhcp.RELEASE else "decline", None
        if kind not in REPLY_TYPES:
            return "unsupported_type", None
        chosen = request.address_option(dhcp.OPT_SERVER_ID)
        if kind == dhcp.REQUEST and chosen is not None and chosen != server_ip:
            return "other_server", None  # the client took another server's offer
        reply_type = REPLY_TYPES[kind]
        if kind == dhcp.REQUEST:
            wanted = request.address_option(dhcp.OPT_REQUESTED_IP) or request.ciaddr
            if wanted != address:  # INIT-REBOOT or RENEW of an address that is not (or no longer) the port's
                reply_type = dhcp.NAK
        reply = self._reply(request, reply_type, address, subnet, server_ip, view, port)
        if reply_type == dhcp.NAK or (request.ciaddr == "0.0.0.0" and request.broadcast):
            dst_ip = BROADCAST
        elif request.ciaddr != "0.0.0.0":
            dst_ip = request.ciaddr  # RENEW, INFORM: the client has its address
        else:
            dst_ip = address
        frame_out = dhcp.reply_frame(mac_bytes(server["mac_address"]), server_ip, request.chaddr, dst_ip, reply)
        return {dhcp.OFFER: "offer", dhcp.ACK: "ack", dhcp.NAK: "nak"}[reply_type], frame_out

    @staticmethod
    def _port(view: LocalView, ifindex: int) -> dict | None:
        port_id = next((pid for pid, idx in view.local_ports.items() if idx == ifindex), None)
        return view.ports.get(port_id) if port_id else None

    @staticmethod
    def _lease_of(view: LocalView, port: dict) -> tuple[str, dict, dict] | None:
        """(address, subnet, DHCP port) of the port's first IPv4 address on a subnet with
        enable_dhcp whose DHCP port holds an address; None when there is none."""
        dhcp_ports = [p for p in view.ports_on_network(port["network_id"]) if p.get("device_owner") == DHCP_OWNER]
        for fixed in port.get("fixed_ips", []):
            subnet = view.subnets.get(fixed.get("subnet_id"))
            if subnet is None or subnet.get("ip_version", 4) != 4 or not subnet.get("enable_dhcp", True):
                continue
            server = next((p for p in dhcp_ports
                           if any(f["subnet_id"] == subnet["id"] for f in p.get("fixed_ips", []))), None)
            if server is not None:
                return fixed["ip_address"], subnet, server
        return None

    def _reply(self, request: dhcp.DhcpMessage, reply_type: int, address: str, subnet: dict, server_ip: str,
               view: LocalView, port: dict) -> bytes:
        options: list[tuple[int, bytes]] = [(dhcp.OPT_MESSAGE_TYPE, bytes([reply_type])),
                                            (dhcp.OPT_SERVER_ID, dhcp.addresses([server_ip]))]
        yiaddr = siaddr = "0.0.0.0"
        if reply_type == dhcp.NAK:
            options.append((dhcp.OPT_MESSAGE, b"requested address is not this port's"))
        else:
            if request.message_type != dhcp.INFORM:  # INFORM: the client configured its address itself
                yiaddr = address
                options += [(dhcp.OPT_LEASE_TIME, self.lease.to_bytes(4, "big")),
                            (dhcp.OPT_RENEWAL_TIME, (self.lease // 2).to_bytes(4, "big")),
                            (dhcp.OPT_REBINDING_TIME, (self.lease * 7 // 8).to_bytes(4, "big"))]
            options += self._configuration(address, subnet, server_ip, view, port)
            extras, siaddr = extra_options(port)
            options = [(code, value) for code, value in options if code not in extras] + list(extras.items())
        message = dhcp.DhcpMessage(op=dhcp.BOOTREPLY, xid=request.xid, flags=request.flags, ciaddr=request.ciaddr,
                                   yiaddr=yiaddr, siaddr=siaddr, chaddr=request.chaddr)
        return dhcp.encode(message, options)

    @staticmethod
    def _configuration(address: str, subnet: dict, server_ip: str, view: LocalView,
                       port: dict) -> list[tuple[int, bytes]]:
        net = ipaddress.IPv4Network(subnet["cidr"])
        network = view.networks.get(port["network_id"], {})
        gateway = subnet.get("gateway_ip")
        dns_servers = [d for d in subnet.get("dns_nameservers") or [] if ":" not in d] or [server_ip]
        hostname, domain = host_identity(port, address)
        options = [(dhcp.OPT_SUBNET_MASK, net.netmask.packed),
                   (dhcp.OPT_BROADCAST_ADDRESS, net.broadcast_address.packed)]
        if gateway:
            options.append((dhcp.OPT_ROUTER, dhcp.addresses([gateway])))
        options += [(dhcp.OPT_DNS_SERVERS, dhcp.addresses(dns_servers)),
                    (dhcp.OPT_HOSTNAME, hostname.encode()), (dhcp.OPT_DOMAIN_NAME, domain.encode()),
                    (dhcp.OPT_DOMAIN_SEARCH, dhcp.domain_search([domain]))]
        if network.get("mtu"):
            options.append((dhcp.OPT_INTERFACE_MTU, int(network["mtu"]).to_bytes(2, "big")))
        # As Neutron: other subnets of the network are on-link (next hop 0.0.0.0). A client
        # given option 121 ignores option 3 (RFC 3442), so the default route is in it too.
        routes = [(r["destination"], r["nexthop"]) for r in subnet.get("host_routes") or []
                  if ":" not in r["destination"]]
        routes += [(s["cidr"], "0.0.0.0") for s in view.subnets_of(port["network_id"])
                   if s["id"] != subnet["id"] and s.get("ip_version", 4) == 4]
        if routes:
            if gateway and not any(ipaddress.IPv4Network(d).prefixlen == 0 for d, _ in routes):
                routes.append(("0.0.0.0/0", gateway))
            encoded = dhcp.classless_routes(routes)
            options += [(dhcp.OPT_CLASSLESS_ROUTES, encoded), (dhcp.OPT_MS_CLASSLESS_ROUTES, encoded)]
        return options
