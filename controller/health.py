"""Load balancer health monitors, probed from the chassis hosting each member.

Probes leave from the subnet's probe-source port (device_owner network:lb-hm, made
by the NB service for every monitored subnet), an address the datapath knows. On
each chassis hosting a monitored member a veth pair stands for that port: the
kernel end (lbhm<network key>) holds the port's address and MAC and carries the
probes as ordinary sockets (TCP connect, an HTTP request, a UDP datagram); the
other end (lbhm<network key>p) is a port of the pipeline (the LB app writes its
if_config and fdb entries), so a probe reaches its member through the member's
security groups like any client, and the answer comes back the same way.

A member goes ERROR after max_retries_down failed probes in a row and ONLINE after
max_retries good ones; the agent writes the change to NB, which rolls it up to the
pool and the load balancer, and the LB app takes an ERROR member out of its ring:
a dead member stops getting new flows within delay × max_retries_down (+ timeout).
"""
from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from .apps.base import LocalView, ipv4_addresses

log = logging.getLogger(__name__)

HM_PORT_OWNER = "network:lb-hm"
TICK = 0.2  # how often the scheduler looks for probes that are due


@dataclass(frozen=True)
class Target:
    member_id: str
    address: str
    port: int
    device: str          # the kernel end of the probe-source veth
    kind: str            # TCP, UDP-CONNECT, HTTP
    delay: float
    timeout: float
    max_retries: int
    max_retries_down: int
    http_method: str = "GET"
    url_path: str = "/"
    expected_codes: str = "200"


@dataclass
class MemberHealth:
    """One member's probe record: runs of good and failed probes, and the status last reported."""

    reported: str = ""
    ok: int = 0
    failed: int = 0
    due: float = 0.0
    running: bool = False

    def observe(self, ok: bool, max_retries: int, max_retries_down: int) -> str | None:
        """Count one probe; the member's new status when it changes (not yet reported)."""
        self.ok, self.failed = (self.ok + 1, 0) if ok else (0, self.failed + 1)
        status = "ONLINE" if self.ok >= max_retries else "ERROR" if self.failed >= max_retries_down else None
        return status if status and status != self.reported else None


@dataclass(frozen=True)
class ProbeSource:
    port: dict           # the network:lb-hm port
    net_key: int
    prefixlen: int
    mtu: int

    @property
    def device(self) -> str:
        return f"lbhm{self.net_key:x}"


def member_network(view: LocalView, member: dict) -> str | None:
    pool = view.pools.get(member.get("pool_id", ""))
    lb = view.loadbalancers.get(pool.get("loadbalancer_id", "")) if pool else None
    subnet = view.subnets.get(member.get("subnet_id") or (lb or {}).get("vip_subnet_id", ""))
    return subnet.get("network_id") if subnet else None


def local_members(view: LocalView) -> list[tuple[dict, dict, str]]:
    """(member, its pool's health monitor, its network id) for members hosted here."""
    if not view.members:
        return []
    local_ips = {(p["network_id"], ip) for p in map(view.ports.get, view.local_ports) if p
                 for ip in ipv4_addresses(p)}
    monitors = {hm["pool_id"]: hm for hm in view.healthmonitors.values() if hm.get("admin_state_up", True)}
    out = []
    for member in view.members.values():
        hm, net = monitors.get(member.get("pool_id", "")), member_network(view, member)
        if hm and net and (net, member.get("address")) in local_ips:
            out.append((member, hm, net))
    return out


def probe_sources(view: LocalView) -> dict[str, ProbeSource]:
    """network id -> the probe source this chassis needs there."""
    wanted = {net for _, _, net in local_members(view)}
    sources = {}
    for port in view.ports_by("owner", HM_PORT_OWNER) if wanted else ():
        net = view.networks.get(port.get("network_id", ""))
        if not net or net["id"] not in wanted:
            continue
        subnet = view.subnets.get(port.get("device_id", ""))
        if subnet and ipv4_addresses(port):
            sources[net["id"]] = ProbeSource(port, net["key"], ipaddress.ip_network(subnet["cidr"]).prefixlen,
                                             net.get("mtu") or 1450)
    return sources


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def ensure_link(src: ProbeSource) -> int:
    """The veth pair for `src` (made or adopted); returns the pipeline end's ifindex."""
    dev, peer = src.device, src.device + "p"
    if _ip("link", "show", dev).returncode != 0:
        for cmd in (["link", "add", dev, "type", "veth", "peer", "name", peer],
                    ["link", "set", dev, "address", src.port["mac_address"]]):
            if _ip(*cmd).returncode != 0:
                raise OSError(f"creating probe-source link {dev}: {_ip(*cmd).stderr.strip()}")
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], capture_output=True)
        # the kernel end: NAPI for frames XDP redirects to it, complete checksums for TCP across XDP
        subprocess.run(["ethtool", "-K", dev, "gro", "on", "tx", "off"], capture_output=True)
    address = f"{ipv4_addresses(src.port)[0]}/{src.prefixlen}"
    _ip("addr", "replace", address, "dev", dev)
    for name in (dev, peer):
        _ip("link", "set", name, "mtu", str(src.mtu), "up")
    with open(f"/sys/class/net/{peer}/ifindex") as f:
        return int(f.read())


def remove_link(device: str) -> None:
    _ip("link", "del", device)


def codes_match(status: int, expected: str) -> bool:
    for part in expected.split(","):
        low, _, high = part.strip().partition("-")
        if int(low) <= status <= int(high or low):
            return True
    return False


def probe(t: Target) -> bool:
    """One probe of one member: True when it answered as its monitor wants."""
    kind = socket.SOCK_DGRAM if t.kind == "UDP-CONNECT" else socket.SOCK_STREAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, t.device.encode())
        sock.settimeout(t.timeout)
        sock.connect((t.address, t.port))
        if t.kind == "UDP-CONNECT":  # as Octavia: only an ICMP "port unreachable" is a failure
            sock.send(b"\n")
            try:
                sock.recv(512)
            except socket.timeout:
                pass
            return True
        if t.kind == "HTTP":
            conn = http.client.HTTPConnection(t.address, t.port, timeout=t.timeout)
            conn.sock = sock
            conn.request(t.http_method, t.url_path, headers={"Connection": "close"})
            return codes_match(conn.getresponse().status, t.expected_codes)
        return True
    except OSError:
        return False
    finally:
        sock.close()


class HealthChecker:
    """The probes of one chassis: update() from every agent pass, a scheduler thread."""

    def __init__(self, report: Callable[[str, str], None]):
        self.report = report
        self.links: dict[str, int] = {}  # probe-source port id -> ifindex of its pipeline end
        self._devices: set[str] = set()
        self._targets: dict[str, Target] = {}
        self._tracks: dict[str, MemberHealth] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lb-probe")
        self._thread = threading.Thread(target=self._loop, name="lb-health", daemon=True)
        self._thread.start()

    def update(self, view: LocalView) -> dict[str, int]:
        """Make the probe-source links this view needs, drop the others, and take its targets."""
        sources = probe_sources(view)
        links, devices = {}, set()
        for src in sources.values():
            try:
                links[src.port["id"]] = ensure_link(src)
                devices.add(src.device)
            except OSError as exc:
                log.warning("health monitors: %s", exc)
        for gone in self._devices - devices:
            remove_link(gone)
        self.links, self._devices = links, devices
        targets = {}
        for member, hm, net in local_members(view):
            src = sources.get(net)
            if src is None or src.device not in devices or not member.get("admin_state_up", True):
                continue
            targets[member["id"]] = Target(
                member["id"], member["address"], member["protocol_port"], src.device, hm["type"], hm["delay"],
                hm["timeout"], hm["max_retries"], hm.get("max_retries_down", 3), hm.get("http_method", "GET"),
                hm.get("url_path", "/"), str(hm.get("expected_codes", "200")))
        with self._lock:
            self._targets = targets
            self._tracks = {mid: self._tracks.get(mid) or MemberHealth(reported=view.members[mid].get("operating_status"))
                            for mid in targets}
        return links

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.wait(TICK):
            now = time.monotonic()
            with self._lock:
                due = [(t, tr) for mid, t in self._targets.items()
                       if not (tr := self._tracks[mid]).running and tr.due <= now]
                for t, tr in due:
                    tr.running, tr.due = True, now + t.delay
            for t, tr in due:
                self._pool.submit(self._run, t, tr)

    def _run(self, t: Target, tr: MemberHealth) -> None:
        try:
            ok = probe(t)
        finally:
            tr.running = False
        status = tr.observe(ok, t.max_retries, t.max_retries_down)
        if status:
            try:
                self.report(t.member_id, status)
                tr.reported = status
                log.info("member %s (%s:%d) is %s", t.member_id, t.address, t.port, status)
            except Exception as exc:  # NB unreachable: the next probe reports again
                log.warning("health monitors: reporting member %s %s failed: %s", t.member_id, status, exc)
