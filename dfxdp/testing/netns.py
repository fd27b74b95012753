"""Network namespaces and veths for tests and the demo, always cleaned up.

    with Topology("t1") as topo:
        a = topo.netns("a")                     # real name: t1-a-<unique>
        topo.veth("v0", a, "v1", b, peer_ready=True)
        topo.ip(a, "addr add 198.18.0.1/24 dev v0")

Everything a Topology creates is removed by close(), even after a failure.
Link names are kept under the kernel's 15-character limit by the caller.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import time
import uuid
from typing import Iterator

from pyroute2 import netns as pr_netns

_counter = itertools.count()


def unique_suffix() -> str:
    """Short, unique per process and call: safe for parallel test runs. It starts with
    the process id in hex and a "g" (never a hex digit), so a process's names are known."""
    return f"{pid_tag()}{next(_counter):x}{uuid.uuid4().hex[:3]}"


def pid_tag(pid: int | None = None) -> str:
    """How names made by process `pid` (default: this one) begin their suffix."""
    return f"{(os.getpid() if pid is None else pid) % 10000:x}g"


def run(cmd: list[str] | str, ns: str | None = None, check: bool = True, timeout: float = 60,
        **kw) -> subprocess.CompletedProcess:
    """Run a command (inside `ns` when given) and capture its output."""
    if isinstance(cmd, str):
        cmd = cmd.split()
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def stop_process(proc: subprocess.Popen, grace: float = 5) -> None:
    """Terminate, and kill what does not exit within `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_listening(ns: str | None, port: int, proto: str = "tcp", timeout: float = 20) -> None:
    """Return once something listens on `port` in `ns`: a server started in the
    background is not ready when Popen returns, least of all on a busy machine."""
    flag = {"tcp": "-ltnH", "udp": "-lunH"}[proto]
    deadline = time.monotonic() + timeout
    while True:
        out = run(["ss", flag, f"sport = :{port}"], ns=ns, check=False).stdout
        if out.strip():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on {proto}/{port} in {ns} after {timeout}s")
        time.sleep(0.05)


def ifindex(name: str, ns: str | None = None) -> int:
    return int(run(["cat", f"/sys/class/net/{name}/ifindex"], ns=ns).stdout)


@contextlib.contextmanager
def inside(ns: str | None) -> Iterator[None]:
    """Switch this thread into `ns` (netlink/libbpf calls resolve ifindexes there)."""
    if ns is None:
        yield
        return
    pr_netns.pushns(ns)
    try:
        yield
    finally:
        pr_netns.popns()


class Topology:
    def __init__(self, prefix: str = "t"):
        self.prefix = prefix[:6]
        self.suffix = unique_suffix()
        self.namespaces: list[str] = []
        self.root_links: list[str] = []
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def netns(self, name: str) -> str:
        full = f"{self.prefix}-{name}-{self.suffix}"
        self.namespaces.append(full)  # first: an interrupt during the add still gets it removed
        run(["ip", "netns", "add", full])
        run(["ip", "link", "set", "lo", "up"], ns=full)
        # No IPv6 autoconf chatter: tests count frames exactly.
        run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], ns=full)
        run(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"], ns=full)
        return full

    def ip(self, ns: str | None, args: str) -> subprocess.CompletedProcess:
        return run(["ip", *args.split()], ns=ns)

    def veth(self, name: str, ns: str | None, peer: str, peer_ns: str | None,
             mac: str | None = None, peer_mac: str | None = None, vm_end: str | None = "peer") -> None:
        """A veth pair `name`@ns <-> `peer`@peer_ns, both up.

        The "VM end" (the peer by default) gets GRO on and TX checksum offload off:
        redirecting into a veth needs NAPI on its peer, and TCP across an XDP
        redirect needs complete checksums (see docs/architecture.md, plugging).
        """
        # Create each end directly in its namespace: names like eth0 may exist in the root one.
        here = ["ip", *(["-n", ns] if ns else []), "link", "add", name, *(["address", mac] if mac else [])]
        there = ["peer", "name", peer, *(["address", peer_mac] if peer_mac else []),
                 *(["netns", peer_ns] if peer_ns else [])]
        if ns is None or peer_ns is None:
            self.root_links.append(name if ns is None else peer)
        run([*here, "type", "veth", *there])
        ends = {"self": [(name, ns)], "peer": [(peer, peer_ns)], "both": [(name, ns), (peer, peer_ns)], None: []}
        for link, where in ends[vm_end]:
            run(["ethtool", "-K", link, "gro", "on", "tx", "off"], ns=where)
        for link, where in ((name, ns), (peer, peer_ns)):
            run(["ip", "link", "set", link, "up"], ns=where)

    def popen(self, cmd: list[str], ns: str | None = None, **kw) -> subprocess.Popen:
        """A background process, killed by close()."""
        if ns:
            cmd = ["ip", "netns", "exec", ns, *cmd]
        proc = subprocess.Popen(cmd, **kw)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)
        self.processes.clear()
        for link in self.root_links:
            run(["ip", "link", "del", link], check=False)
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns], check=False)
        self.root_links.clear()
        self.namespaces.clear()
