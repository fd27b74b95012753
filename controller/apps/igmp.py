"""IGMP snooping in the OVS fallback (Dragonflow's distributed IGMP): IPv4 multicast data
goes only to the ports that joined its group, on this chassis and on the others.

XDP passes multicast to the kernel, where br-int catches it (docs/fallback.md). The
flood app sends every frame with the group bit to this app's table instead of
flooding it. Here:

- IGMP (IPv4 protocol 2) is copied to the agent (packet-in) and flooded in its
  network: reports and leaves from local taps are learned per port (`Membership`);
- 224.0.0.0/24 (link-local control: routing protocols, mDNS …) is flooded as before;
- data to a group goes to the local taps that joined it and, one copy each, to
  every chassis whose NB record lists the group on that network (each agent
  publishes its own: `igmp_groups`); from the tunnel, to local members only;
- data to a group nobody joined is dropped; non-IPv4 multicast and broadcast
  go on to the flood table.

Every flow matches the network, so multicast never crosses networks. The agent is
the networks' querier (RFC 4541 2.1.1, proxy querier with source 0.0.0.0): a
General Query to every local tap when it appears and every QUERY_INTERVAL, so
members report again before GROUP_MEMBERSHIP_INTERVAL (RFC 3376 8.4) ages them out.
Leaves take effect at once ("fast leave"): memberships are kept per port, one VM
each, and a VM's kernel reports a leave only when its last socket left the group.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from dfxdp.controller.binding import tap_name
from dfxdp.controller.ovs.flows import DROP, Flow, goto, output, set_field, to_controller
from dfxdp.controller.ovs.bridge import TUNNEL_PORT

from .fallback_sg import deliver
from .base import App, LocalView
from .flood import TABLE_FLOOD, TABLE_MULTICAST
from .ra import TABLE_ROUTER_SOLICIT

log = logging.getLogger(__name__)

ROBUSTNESS = 2
QUERY_INTERVAL = 125.0           # RFC 3376 8.2
QUERY_RESPONSE_INTERVAL = 10.0   # RFC 3376 8.3
GROUP_MEMBERSHIP_INTERVAL = ROBUSTNESS * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL  # 260 s

LINK_LOCAL = ipaddress.IPv4Network("224.0.0.0/24")
MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")
ETH_P_IP = 0x0800
IPPROTO_IGMP = 2

# IGMP message types (RFC 2236, RFC 3376)
QUERY, V1_REPORT, V2_REPORT, V2_LEAVE, V3_REPORT = 0x11, 0x12, 0x16, 0x17, 0x22
# IGMPv3 group record types
MODE_IS_INCLUDE, MODE_IS_EXCLUDE, CHANGE_TO_INCLUDE, CHANGE_TO_EXCLUDE, ALLOW_NEW, BLOCK_OLD = range(1, 7)

QUERIER_MAC = "02:df:00:00:00:01"  # locally administered: no NIC carries it


class MalformedIgmp(ValueError):
    """A frame that is not a well-formed IGMP message."""


@dataclass(frozen=True)
class GroupChange:
    group: str
    joined: bool  # False: left


def _u16(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 2], "big")


def _be16(value: int) -> bytes:
    return value.to_bytes(2, "big")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(_u16(data, i) for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _group(raw: bytes) -> str:
    group = ipaddress.IPv4Address(raw)
    if group not in MULTICAST:
        raise MalformedIgmp(f"group {group} is not a multicast address")
    return str(group)


def parse_igmp(frame: bytes) -> list[GroupChange]:
    """What an Ethernet frame carrying IGMP says about its sender's groups: joins and leaves.
    Queries and IGMPv3 BLOCK records change nothing here (empty list); MalformedIgmp
    when the frame is not IPv4 IGMP, is cut short, or its checksum is wrong."""
    if len(frame) < 14 + 20 or _u16(frame, 12) != ETH_P_IP:
        raise MalformedIgmp("not an IPv4 frame")
    ihl = (frame[14] & 0x0F) * 4
    total = _u16(frame, 16)
    if frame[14] >> 4 != 4 or ihl < 20 or total < ihl + 8 or 14 + total > len(frame):
        raise MalformedIgmp("bad IPv4 header")
    if frame[14 + 9] != IPPROTO_IGMP:
        raise MalformedIgmp(f"IPv4 protocol {frame[14 + 9]}, not IGMP")
    igmp = frame[14 + ihl:14 + total]
    if _checksum(igmp) != 0:
        raise MalformedIgmp("bad IGMP checksum")
    kind = igmp[0]
    if kind in (V1_REPORT, V2_REPORT, V2_LEAVE):
        group = _group(igmp[4:8])
        return [GroupChange(group, kind != V2_LEAVE)]
    if kind == V3_REPORT:
        return _v3_records(igmp)
    if kind == QUERY:
        return []
    raise MalformedIgmp(f"unknown IGMP type {kind:#x}")


def _v3_records(igmp: bytes) -> list[GroupChange]:
    """RFC 3376 4.2: any-source granularity. Excluding sources, or including some, is a
    join; including none (TO_IN {} / IS_IN {}) is a leave; BLOCK changes nothing."""
    if len(igmp) < 8:
        raise MalformedIgmp("IGMPv3 report shorter than its header")
    count, offset, changes = _u16(igmp, 6), 8, []
    for _ in range(count):
        if offset + 8 > len(igmp):
            raise MalformedIgmp("IGMPv3 group record cut short")
        rtype, aux_words, sources = igmp[offset], igmp[offset + 1], _u16(igmp, offset + 2)
        group = _group(igmp[offset + 4:offset + 8])
        offset += 8 + 4 * sources + 4 * aux_words
        if offset > len(igmp):
            raise MalformedIgmp("IGMPv3 group record sources cut short")
        if rtype in (MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE):
            changes.append(GroupChange(group, True))
        elif rtype in (MODE_IS_INCLUDE, CHANGE_TO_INCLUDE, ALLOW_NEW):
            changes.append(GroupChange(group, sources > 0))
        elif rtype != BLOCK_OLD:
            raise MalformedIgmp(f"unknown IGMPv3 record type {rtype}")
    return changes


def general_query() -> bytes:
    """An IGMPv3 General Query from 0.0.0.0 to 224.0.0.1 (v2 hosts answer it too, RFC 3376 7.2.1),
    with the Router Alert option (RFC 2113) as RFC 3376 4 requires."""
    igmp = bytes([QUERY, int(QUERY_RESPONSE_INTERVAL * 10), 0, 0]) + bytes(4) + \
        bytes([ROBUSTNESS, int(QUERY_INTERVAL)]) + bytes(2)  # group 0.0.0.0, no sources
    igmp = igmp[:2] + _be16(_checksum(igmp)) + igmp[4:]
    options = b"\x94\x04\x00\x00"
    header = bytes([0x46, 0xC0]) + _be16(24 + len(igmp)) + bytes(4) + bytes([1, IPPROTO_IGMP]) + bytes(2) + \
        bytes(4) + socket.inet_aton("224.0.0.1") + options  # TTL 1, from 0.0.0.0
    header = header[:10] + _be16(_checksum(header)) + header[12:]
    eth = bytes.fromhex("01005e000001") + bytes.fromhex(QUERIER_MAC.replace(":", "")) + _be16(ETH_P_IP)
    return eth + header + igmp


class Membership:
    """Which local port joined which group, and until when (thread-safe: packet-ins
    write it, passes read it). A report (re)starts the port's membership for
    GROUP_MEMBERSHIP_INTERVAL; a leave ends it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._expiry: dict[tuple[str, str], dict[str, float]] = {}  # (network id, group) -> port id -> expiry
        self._lock = threading.Lock()

    def learn(self, network_id: str, port_id: str, changes: Iterable[GroupChange]) -> bool:
        """Apply a port's reports; True when the set of members changed."""
        changed, now = False, self.clock()
        with self._lock:
            for change in changes:
                if ipaddress.IPv4Address(change.group) in LINK_LOCAL:
                    continue  # always flooded: nothing to snoop
                ports = self._expiry.setdefault((network_id, change.group), {})
                if change.joined:
                    changed |= port_id not in ports or ports[port_id] <= now
                    ports[port_id] = now + GROUP_MEMBERSHIP_INTERVAL
                elif ports.pop(port_id, None) is not None:
                    changed = True
                if not ports:
                    del self._expiry[(network_id, change.group)]
        return changed

    def members(self, local_ports: Mapping[str, object] | None = None) -> dict[tuple[str, str], set[str]]:
        """(network id, group) -> the ports still members; expired ones, and ports no
        longer in `local_ports` (unbound, deleted), are forgotten."""
        now, current = self.clock(), {}
        with self._lock:
            for key, ports in list(self._expiry.items()):
                for port_id, expiry in list(ports.items()):
                    if expiry <= now or (local_ports is not None and port_id not in local_ports):
                        del ports[port_id]
                if ports:
                    current[key] = set(ports)
                else:
                    del self._expiry[key]
        return current


def groups_by_network(members: Mapping[tuple[str, str], set[str]]) -> dict[str, list[str]]:
    """What a chassis publishes in its NB record: network id -> groups with a local member."""
    out: dict[str, list[str]] = {}
    for net_id, group in sorted(members):
        out.setdefault(net_id, []).append(group)
    return out


class IgmpApp(App):
    name = "igmp"
    depends = ()  # no map entries: nothing a pass derives
    tables = (TABLE_MULTICAST,)
    flow_cookie = 2

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.membership = Membership(clock)
        self.clock = clock
        self._queried: dict[int, float] = {}  # tap ifindex -> when it was last sent a General Query
        self._sender = None

    # ---- learning ----
    def on_packet_in(self, view: LocalView, port_id: str, frame: bytes) -> bool:
        port = view.ports.get(port_id)
        if port is None or port.get("network_id") not in view.networks:
            return False
        try:
            changes = parse_igmp(frame)
        except MalformedIgmp as exc:
            log.debug("IGMP from port %s ignored: %s", port_id, exc)
            return False
        return self.membership.learn(port["network_id"], port_id, changes)

    def chassis_facts(self, view: LocalView) -> dict:
        return {"igmp_groups": groups_by_network(self.membership.members(view.local_ports))}

    # ---- flows ----
    def flows(self, view: LocalView) -> Iterable[Flow]:
        tunnel = view.ofports.get(TUNNEL_PORT)
        members = self.membership.members(view.local_ports)
        remote: dict[tuple[str, str], set[str]] = {}  # (network id, group) -> tunnel IPs of chassis with members
        for name, chassis in view.chassis_by_name.items():
            if name == view.chassis or not chassis.get("tunnel_ip"):
                continue
            for net_id, groups in (chassis.get("igmp_groups") or {}).items():
                for group in groups:
                    remote.setdefault((net_id, group), set()).add(chassis["tunnel_ip"])
        local_nets = {view.ports[p]["network_id"] for p in view.local_ports if p in view.ports}
        for net_id in sorted(local_nets & view.networks.keys()):
            key = view.networks[net_id]["key"]
            ip = {"metadata": key, "eth_type": ETH_P_IP}
            if tunnel is not None:  # learned by the chassis it came from, which publishes it in NB
                yield Flow.of(TABLE_MULTICAST, 310, {**ip, "ip_proto": IPPROTO_IGMP, "in_port": tunnel},
                              [goto(TABLE_FLOOD)])
            yield Flow.of(TABLE_MULTICAST, 300, {**ip, "ip_proto": IPPROTO_IGMP}, [to_controller(), goto(TABLE_FLOOD)])
            yield Flow.of(TABLE_MULTICAST, 200, {**ip, "ipv4_dst": (str(LINK_LOCAL.network_address),
                                                                    str(LINK_LOCAL.netmask))}, [goto(TABLE_FLOOD)])
            groups = sorted({g for n, g in members if n == net_id} | {g for n, g in remote if n == net_id})
            for group in groups:
                taps = sorted((view.ofports[tap_name(p)], p) for p in members.get((net_id, group), ())
                              if tap_name(p) in view.ofports and p in view.ports)
                # through the member's ingress rules when it has port security (fallback_sg.py)
                locally = [a for ofport, p in taps for a in deliver(view, view.ports[p], ofport)]
                if tunnel is None:
                    yield Flow.of(TABLE_MULTICAST, 100, {**ip, "ipv4_dst": group}, locally)
                    continue
                # From the tunnel: local members only (the sender replicated to every chassis itself).
                yield Flow.of(TABLE_MULTICAST, 110, {**ip, "ipv4_dst": group, "in_port": tunnel}, locally)
                replicate = [a for tip in sorted(remote.get((net_id, group), set()) - {view.tunnel_ip})
                             for a in (set_field("tun_ipv4_dst", tip), set_field("tunnel_id", key), output(tunnel))]
                yield Flow.of(TABLE_MULTICAST, 100, {**ip, "ipv4_dst": group}, locally + replicate)
            # A group nobody joined: nobody gets it.
            yield Flow.of(TABLE_MULTICAST, 50, {**ip, "ipv4_dst": (str(MULTICAST.network_address),
                                                                   str(MULTICAST.netmask))}, DROP)
        # broadcast, IPv6 multicast …: flooded, past the router solicitations the ra app answers
        yield Flow.of(TABLE_MULTICAST, 0, {}, [goto(TABLE_ROUTER_SOLICIT)])

    # ---- querier ----
    def fallback_upkeep(self, view: LocalView) -> None:
        """Be the querier: a General Query to every local tap new since the last pass, and to
        each again every QUERY_INTERVAL (the members answer, and their membership is renewed)."""
        # The punt path's AF_PACKET sender; imported here: punt.py imports the apps package.
        from dfxdp.controller.punt import ReplySender

        now = self.clock()
        taps = set(view.local_ports.values())
        self._queried = {i: t for i, t in self._queried.items() if i in taps}
        due = sorted(i for i in taps if now - self._queried.get(i, -QUERY_INTERVAL) >= QUERY_INTERVAL)
        if not due:
            return
        if self._sender is None:
            self._sender = ReplySender()
        query = general_query()
        for ifindex in due:
            try:
                self._sender.send(ifindex, query)
                self._queried[ifindex] = now
            except OSError as exc:  # the tap went away between the pass and now: next pass
                log.debug("IGMP query to ifindex %d: %s", ifindex, exc)
