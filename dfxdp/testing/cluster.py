"""A multi-chassis dfxdp deployment on one machine, for tests and the demo.

    fabric ns:   bridge `br-u` (underlay 198.18.0.0/24, .1 = services), bridge `br-x`
                 (flat external network 198.19.0.0/24), etcd (or a shared sqlite file, the
                 embedded default) and `dfxdp server` on 0.0.0.0
    root ns:     `mg…` veth to the fabric's `mgmt`, a /30 of its own from 198.18.128.0/17
                 (API and etcd reachable there), so several clusters can run at once
    chassis ns:  `und0` on br-u (198.18.0.1N), `ext0` on br-x, one `dfxdp agent`; with
                 `ovs=True` also a private Open vSwitch whose br-int the agent owns (the
                 fallback); without, agents run `--ovsdb none` (XDP only: lighter for the
                 bench and tests that count frames)
    vm ns:       `eth0` ⇄ `tap<port-id[:11]>` in its chassis ns (Neutron's naming)
    outside ns:  a host on the external network (198.19.0.100)

Everything lives in namespaces this helper creates, under unique names; close()
removes it all, even after a failure.
"""
from __future__ import annotations

import fcntl
import ipaddress
import os
import pathlib
import shutil
import subprocess
import sys
import time
import uuid

from dfxdp.controller.binding import tap_name
from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import Pipeline

from .etcd import EtcdServer
from .netns import Topology, run
from .ovs import OvsServer

SERVICES_IP = "198.18.0.1"
MGMT_POOL = ipaddress.ip_network("198.18.128.0/17")  # carved into one /30 per cluster
API_PORT = 9696
EXTERNAL_CIDR = "198.19.0.0/24"
OUTSIDE_IP = "198.19.0.100"
BPFFS_ROOT = pathlib.Path("/run/dfxdp-test")


class Chassis:
    def __init__(self, cluster: "Cluster", index: int):
        self.cluster = cluster
        self.name = f"ch{index}"
        self.tunnel_ip = f"198.18.0.{10 + index}"
        self.ns = cluster.topo.netns(self.name)
        self.bpffs = cluster.bpffs / self.name
        self.proc: subprocess.Popen | None = None
        self.ovs: OvsServer | None = None
        topo = cluster.topo
        topo.veth("und0", self.ns, f"u{index}", cluster.fabric, vm_end="peer")
        topo.ip(cluster.fabric, f"link set u{index} master br-u")
        topo.ip(self.ns, f"addr add {self.tunnel_ip}/24 dev und0")
        topo.veth("ext0", self.ns, f"x{index}", cluster.fabric, vm_end="peer")
        topo.ip(cluster.fabric, f"link set x{index} master br-x")
        if cluster.with_ovs:
            self.ovs = OvsServer(ns=self.ns).start()

    def start_agent(self, *extra_args: str) -> None:
        """`dfxdp agent` for this chassis; `extra_args` (e.g. more --bridge-mappings) appended."""
        self.log = open(self.cluster.logdir / f"agent-{self.name}.log", "ab")
        self.proc = self.cluster.topo.popen(
            [sys.executable, "-m", "dfxdp.cli.main", "agent", "--db", self.cluster.db_url, "--chassis", self.name,
             "--tunnel-ip", self.tunnel_ip, "--underlay", "und0", "--external-interface", "ext0",
             "--bpffs", str(self.bpffs), "--metrics-listen", f"{self.tunnel_ip}:9870",
             "--ovsdb", self.ovs.db_url if self.ovs else "none", *extra_args],
            ns=self.ns, stdout=self.log, stderr=subprocess.STDOUT, env=self.cluster.env)

    def stop_agent(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(10)
        self.proc = None

    def forget_datapath(self) -> None:
        """Unpin every map and program of this chassis: the next agent starts empty."""
        Pipeline(self.bpffs).destroy()


class Cluster:
    # every cluster made in this process, so a test runner can remove the logs of those a passed
    # test closed (a failed one's stay for its message, which names them)
    made: list["Cluster"] = []

    def __init__(self, topo: Topology, chassis: int = 3, db: str = "etcd", start_agents: bool = True,
                 ovs: bool = False):
        self.closed = False
        self.keep_logs = False  # a test runner's mark: a failure needs them
        Cluster.made.append(self)
        self.topo = topo
        self.with_ovs = ovs
        self.uid = uuid.uuid4().hex[:8]
        self.logdir = pathlib.Path(f"/tmp/dfxdp-cluster-{self.uid}")
        self.logdir.mkdir(parents=True)
        self.env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[2])}
        # One bpffs for every chassis, mounted before any `ip netns exec` so all agents see it.
        self.bpffs = BPFFS_ROOT / f"cluster-{self.uid}"
        try:
            self._build(topo, chassis, db, start_agents)
        except BaseException:  # a failed or interrupted start leaves nothing behind either
            self.close()
            raise

    def _build(self, topo: Topology, chassis: int, db: str, start_agents: bool) -> None:
        libbpf.ensure_bpffs(self.bpffs)
        self.fabric = topo.netns("fabric")
        for bridge in ("br-u", "br-x"):
            topo.ip(self.fabric, f"link add {bridge} type bridge")
            topo.ip(self.fabric, f"link set {bridge} up")
        topo.ip(self.fabric, f"addr add {SERVICES_IP}/24 dev br-u")
        topo.veth(f"mg{self.uid[:6]}", None, "mgmt", self.fabric, vm_end=None)
        self.mgmt_fabric = self._claim_mgmt_subnet(f"mg{self.uid[:6]}")
        topo.ip(self.fabric, f"addr add {self.mgmt_fabric}/30 dev mgmt")
        self.outside = topo.netns("outside")
        topo.veth("eth0", self.outside, "xo", self.fabric, vm_end="both")
        topo.ip(self.fabric, "link set xo master br-x")
        topo.ip(self.outside, f"addr add {OUTSIDE_IP}/24 dev eth0")
        self.etcd: EtcdServer | None = None
        if db == "etcd":
            self.etcd = EtcdServer(host=SERVICES_IP, ns=self.fabric, also_on=self.mgmt_fabric)
            self.etcd.start()
            self.db_url = f"etcd://{SERVICES_IP}:{self.etcd.client_port}"
            self.root_db_url = f"etcd://{self.mgmt_fabric}:{self.etcd.client_port}"  # from the root namespace
        else:  # the embedded default: one sqlite file, shared by the server and every agent
            self.db_url = self.root_db_url = f"sqlite:///{self.logdir}/nb.db"
        self.server = topo.popen([sys.executable, "-m", "dfxdp.cli.main", "server", "--db", self.db_url,
                                  "--listen", f"0.0.0.0:{API_PORT}"], ns=self.fabric,
                                 stdout=open(self.logdir / "server.log", "ab"), stderr=subprocess.STDOUT, env=self.env)
        self.api_url = f"http://{self.mgmt_fabric}:{API_PORT}"
        self._wait_api()
        self.chassis: list[Chassis] = []
        for i in range(1, chassis + 1):  # one by one: close() stops the OVS of those already built
            self.chassis.append(Chassis(self, i))
        for ch in self.chassis if start_agents else ():
            ch.start_agent()
        self.vms: dict[str, str] = {}

    @staticmethod
    def _claim_mgmt_subnet(root_end: str) -> str:
        """Give the root end of the management veth the first /30 of MGMT_POOL that no
        interface here uses; returns the fabric end's address. A file lock keeps two
        processes (tests and a bench) from picking the same one."""
        BPFFS_ROOT.mkdir(parents=True, exist_ok=True)
        with open(BPFFS_ROOT / "mgmt.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = run(["ip", "-4", "-o", "addr", "show"]).stdout
            for subnet in MGMT_POOL.subnets(new_prefix=30):
                fabric_end, root_end_ip = subnet[1], subnet[2]
                if f" {root_end_ip}/" not in used:
                    run(["ip", "addr", "add", f"{root_end_ip}/30", "dev", root_end])
                    return str(fabric_end)
        raise RuntimeError(f"no free management /30 left in {MGMT_POOL}")

    def _wait_api(self, timeout: float = 30) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.api_url + "/", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"API server did not come up: {(self.logdir / 'server.log').read_text()[-2000:]}")

    def connect(self):
        import openstack

        return openstack.connect(auth_type="none", auth={"endpoint": self.api_url},
                                 network_endpoint_override=self.api_url)

    def plug(self, port, chassis: Chassis, name: str | None = None, configure_ip: bool = True) -> str:
        """A VM namespace whose eth0 carries `port` (an openstacksdk Port) on `chassis`. Without
        `configure_ip`, eth0 is up with no address, the default MTU and no route: for DHCP."""
        vm = self.topo.netns(name or f"vm{len(self.vms)}")
        fixed = port.fixed_ips[0]
        subnet = self.connect().network.get_subnet(fixed["subnet_id"])
        prefix = ipaddress.ip_network(subnet.cidr).prefixlen
        # VM end: GRO on (NAPI for XDP redirects into it), TX checksum offload off (TCP across XDP)
        self.topo.veth(tap_name(port.id), chassis.ns, "eth0", vm, peer_mac=port.mac_address, vm_end="peer")
        # The network's MTU leaves room for VXLAN (Neutron hands it to VMs by DHCP; os-vif sets the tap).
        mtu = self.connect().network.get_network(port.network_id).mtu
        self.topo.ip(chassis.ns, f"link set {tap_name(port.id)} mtu {mtu}")
        if configure_ip:
            self.topo.ip(vm, f"link set eth0 mtu {mtu}")
            self.topo.ip(vm, f"addr add {fixed['ip_address']}/{prefix} dev eth0")
            if subnet.gateway_ip:
                self.topo.ip(vm, f"route add default via {subnet.gateway_ip}")
        self.vms[port.id] = vm
        return vm

    def wait_active(self, port_id: str, timeout: float = 30) -> None:
        conn = self.connect()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if conn.network.get_port(port_id).status == "ACTIVE":
                return
            time.sleep(0.2)
        raise AssertionError(f"port {port_id} not ACTIVE after {timeout}s; agent logs in {self.logdir}")

    def ping(self, vm: str, dst: str, count: int = 3, wait: float = 15) -> bool:
        """True once `count` pings in a row succeed within `wait` seconds (convergence included)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if run(["ping", "-c", str(count), "-i", "0.2", "-W", "1", dst], ns=vm, check=False).returncode == 0:
                return True
            time.sleep(0.3)
        return False

    def close(self) -> None:
        for ch in getattr(self, "chassis", []):
            ch.stop_agent()
            if ch.ovs:
                ch.ovs.close()
        self.topo.close()
        if getattr(self, "etcd", None):
            self.etcd.close()
        subprocess.run(["umount", "-l", str(self.bpffs)], check=False)
        try:
            self.bpffs.rmdir()
        except OSError:
            pass
        self.closed = True

    def remove_logs(self) -> None:
        """The agents', the server's and etcd's logs (close() keeps them for a failure)."""
        shutil.rmtree(self.logdir, ignore_errors=True)
