"""dns_servers, dns_names, dns_reverse: what stage_dns answers for each network.

The names are the ports' `dns_assignment` as the NB service computed it
(dfxdp/nb/dns.py): each fqdn, and its bare hostname, to the port's addresses;
each IPv4 back to its fqdn. A network's DNS server addresses are its DHCP
port's (`network:dhcp`), as in Neutron; its domain is the one that port's own
name is in, so a changed `dns_domain` reaches the datapath with the ports.

What stage_dns does not answer it punts (PUNT_DNS), and every TCP segment to
port 53: on_punt holds the TCP connections (controller/dns_tcp.py), answers a
query for the network's own names itself, from the same names the maps hold
(controller/dns_zone.py: over TCP, or with DNSSEC OK …), and relays any other
to the subnet's first IPv4 `dns_nameservers`, else the agent's `--dns-upstream`,
over the protocol it came by (controller/dns_forwarder.py); with neither, the VM
gets REFUSED. An answer over UDP larger than the client takes (its EDNS size, 512
without, or the network's MTU) goes out truncated with TC: the client asks again
over TCP.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Callable, Hashable, Iterable

from dfxdp.datapath.libbpf import lib

from ..dns_forwarder import ETH_HLEN, UDP_HLEN, Forwarder, refused, reply_frame
from ..dns_tcp import TcpResponder
from ..dns_zone import CLASSIC_UDP, Zone, answer as zone_answer, question, truncated
from ..desired import Change
from .base import Entry, LocalView, ScopedApp, ipv4_be32

if TYPE_CHECKING:
    from ..punt import PuntedPacket

DHCP_OWNER = "network:dhcp"
IPV4_UDP_HLEN = 28
DEFAULT_MTU = 1500
DEFAULT_TTL = 60  # seconds; dnsmasq as Neutron runs it answers its hosts with no TTL (0) or local-ttl
ADDRS_MAX = lib.DNS_ADDRS_MAX


def wire_name(name: str) -> bytes:
    """A domain name in lowercase DNS wire format ("web.example." -> b"\\x03web\\x07example\\x00")."""
    labels = [label for label in name.lower().rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\x00"


def name_hash(wire: bytes) -> int:
    """FNV-1a 32 of a lowercase wire name: the key stage_dns computes from the query (in C:
    a full pass hashes every port's names)."""
    return lib.dfxdp_fnv1a32(wire, len(wire))


def _padded(wire: bytes) -> bytes:
    return wire.ljust(lib.DNS_NAME_BUF, b"\x00")


def port_names(port: dict, domain: str) -> dict[str, list[str]]:
    """name (fqdn, and the bare hostname when the fqdn is one label under `domain`) -> addresses."""
    names: dict[str, list[str]] = {}
    suffix = "." + domain.lower() if domain else None
    for a in port.get("dns_assignment") or []:
        fqdn = a["fqdn"].lower()
        fqdn = fqdn if fqdn.endswith(".") else fqdn + "."
        names.setdefault(fqdn, []).append(a["ip_address"])
        if suffix and fqdn.endswith(suffix) and "." not in fqdn[:-len(suffix)]:
            names.setdefault(fqdn[:-len(suffix)] + ".", []).append(a["ip_address"])
    return names


def _by_family(addresses: list[str]) -> tuple[list[str], list[str]]:
    """(IPv4, IPv6) addresses, as many of each as stage_dns answers."""
    return [a for a in addresses if ":" not in a][:ADDRS_MAX], [a for a in addresses if ":" in a][:ADDRS_MAX]


def network_domain(dhcp_port: dict) -> str:
    """The domain the network's names are in, read off its DHCP port's host-<ip> name."""
    for a in dhcp_port.get("dns_assignment") or []:
        if a["fqdn"].startswith(a["hostname"] + "."):
            return a["fqdn"][len(a["hostname"]) + 1:]
    return ""


class DnsApp(ScopedApp):
    name = "dns"
    maps = ("dns_servers", "dns_names", "dns_reverse")
    datapath_maps = ("dns_scratch", "dns_stats")  # per-CPU scratch and counters, written by stage_dns
    punt_reasons = (lib.PUNT_DNS,)

    def __init__(self, ttl: int = DEFAULT_TTL, upstream: tuple[str, int] | None = None) -> None:
        self.ttl = ttl
        self.upstream = upstream  # the resolver for subnets without dns_nameservers
        self.forwarder = Forwarder()
        self.tcp = TcpResponder()
        self._zones: dict[str, Zone] = {}   # per network, for the view below
        self._zones_view: LocalView | None = None

    def on_punt(self, packet: "PuntedPacket") -> None:
        frame = packet.frame
        if len(frame) < ETH_HLEN + 20 + UDP_HLEN or frame[ETH_HLEN] >> 4 != 4:
            return  # stage_dns punts only IPv4; anything else is not ours to answer
        server = ".".join(str(b) for b in frame[ETH_HLEN + 16:ETH_HLEN + 20])
        net = self._network(packet.view, packet.net_key)

        def resolve(query: bytes, deliver: Callable[[bytes], None], tcp: bool) -> None:
            local = zone_answer(self._zone(packet.view, net), query) if net else None
            if local is not None:
                deliver(local)
                return
            upstream = self._upstream_for(packet.view, net, server)
            if upstream is None:
                if len(query) >= 12:
                    deliver(refused(query))
            elif tcp:
                self.forwarder.forward_tcp(query, upstream, deliver)
            else:
                self.forwarder.forward(query, upstream, deliver)

        if frame[ETH_HLEN + 9] == socket.IPPROTO_TCP:
            self.tcp.segment(packet.ifindex, frame, packet.reply, lambda query, deliver: resolve(query, deliver, True))
            return
        ihl = (frame[ETH_HLEN] & 0x0F) * 4
        query = frame[ETH_HLEN + ihl + UDP_HLEN:]
        q = question(query)
        limit = min(q.udp_size if q else CLASSIC_UDP, int((net or {}).get("mtu") or DEFAULT_MTU) - IPV4_UDP_HLEN)

        def answer(payload: bytes) -> None:
            packet.reply(reply_frame(frame, payload if len(payload) <= limit else truncated(payload)))

        resolve(query, answer, False)

    @staticmethod
    def _network(view: LocalView | None, net_key: int) -> dict | None:
        return next(iter(view.find("network", "key", net_key)), None) if view else None

    def _zone(self, view: LocalView, net: dict) -> Zone:
        """The network's names as the maps hold them; built once per view (pass) and network."""
        if view is not self._zones_view:
            self._zones, self._zones_view = {}, view
        if net["id"] not in self._zones:
            ports = view.ports_on_network(net["id"])
            dhcp = next((p for p in ports if p.get("device_owner") == DHCP_OWNER), None)
            domain = network_domain(dhcp) if dhcp else ""
            zone = Zone(wire_name(domain) if domain else b"", self.ttl)
            for port in sorted(ports, key=lambda p: p["id"]):
                for name, addresses in port_names(port, domain).items():
                    v4, v6 = _by_family(addresses)
                    for address in v4 + v6:
                        zone.add(wire_name(name), address)
                for a in port.get("dns_assignment") or []:
                    if ":" not in a["ip_address"]:
                        zone.reverse[ipaddress.IPv4Address(a["ip_address"]).packed] = wire_name(a["fqdn"])
            self._zones[net["id"]] = zone
        return self._zones[net["id"]]

    def _upstream_for(self, view: LocalView | None, net: dict | None, server: str) -> tuple[str, int] | None:
        """The first IPv4 dns_nameservers of the subnet the server address is in, else ours."""
        if net is not None:
            address = ipaddress.ip_address(server)
            for subnet in view.subnets_of(net["id"]):
                if address in ipaddress.ip_network(subnet["cidr"]):
                    v4 = [d for d in subnet.get("dns_nameservers") or [] if ":" not in d]
                    if v4:
                        return v4[0], 53
        return self.upstream

    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        return list(view.ports)  # scopes are port ids: a DHCP port's servers, a port's names

    def affected(self, view: LocalView, change: Change) -> Iterable[Hashable]:
        if change.kind == "port":
            if any(doc.get("device_owner") == DHCP_OWNER for doc in change.docs()):  # the network's domain
                return {i for doc in change.docs() for i in view.ids("port", "network", doc["network_id"])} \
                    | {change.obj_id}
            return (change.obj_id,)
        if change.kind == "network":
            return view.ids("port", "network", change.obj_id)
        return ()

    def scope_entries(self, view: LocalView, port_id: Hashable) -> Iterable[Entry]:
        port = view.ports.get(port_id)
        net = view.networks.get(port.get("network_id")) if port else None
        if not net:
            return
        if port.get("device_owner") == DHCP_OWNER:
            yield from self._servers(port, net)
        if port.get("dns_assignment"):
            # a 32-bit hash two names share: the first port to want it keeps it (controller/desired.py),
            # the datapath passes queries for the other up
            yield from self._port(port, net["key"], self._domain(view, net["id"]))

    @staticmethod
    def _domain(view: LocalView, network_id: str) -> str:
        """The network's domain, read off its DHCP port; the same for all its ports in one pass."""
        domains = view.derived.setdefault("dns_domains", {})
        if network_id not in domains:
            dhcp = [p for p in view.ports_by("owner", DHCP_OWNER) if p.get("network_id") == network_id]
            domains[network_id] = network_domain(dhcp[-1]) if dhcp else ""
        return domains[network_id]

    def _servers(self, dhcp_port: dict, net: dict) -> Iterable[Entry]:
        domain = wire_name(network_domain(dhcp_port)) if network_domain(dhcp_port) else b""
        for fixed in dhcp_port.get("fixed_ips", []):
            if ":" in fixed["ip_address"]:
                continue  # queries are answered over IPv4
            yield Entry("dns_servers", {"net_key": net["key"], "ip": ipv4_be32(fixed["ip_address"])},
                        {"ttl": self.ttl, "domain_len": len(domain), "domain": _padded(domain)})

    @staticmethod
    def _port(port: dict, net_key: int, domain: str) -> Iterable[Entry]:
        # arrays and the name shorter than their fields: the rest is zeros (as the encoders fill them)
        wires: dict[str, bytes] = {}
        for name, addresses in port_names(port, domain).items():
            wire = wires[name] = wire_name(name)
            v4, v6 = _by_family(addresses)
            value = {"name_len": len(wire), "ipv4_count": len(v4), "ipv6_count": len(v6),
                     "ipv4": [ipv4_be32(a) for a in v4], "name": wire}
            if v6:
                value["ipv6"] = [ipaddress.IPv6Address(a).packed for a in v6]
            yield Entry("dns_names", {"net_key": net_key, "hash": name_hash(wire)}, value)
        for a in port.get("dns_assignment") or []:
            if ":" not in a["ip_address"]:
                fqdn = a["fqdn"].lower()
                wire = wires.get(fqdn if fqdn.endswith(".") else fqdn + ".") or wire_name(fqdn)
                yield Entry("dns_reverse", {"net_key": net_key, "ip": ipv4_be32(a["ip_address"])},
                            {"name_len": len(wire), "name": wire})
