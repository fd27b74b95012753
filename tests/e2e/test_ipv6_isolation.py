"""IPv6 cannot reach or leave a VM whose security groups allow none (issue 11, part 1).

The issue's reproduction with real agents on two chassis: a neighbour that knows the
guarded VM's MAC (a static neighbour entry) sends UDP with `nc -6 -u` to its link-local
address. Its security groups allow IPv4 UDP to that port and no IPv6, so the IPv4
datagram arrives and the IPv6 one is dropped, counted as DROP_SG_IPV6 on its chassis.
Controls show each path open for what may pass: the same senders reach a VM without
port security over IPv6, and the guarded VM's own listener gets their IPv4."""
import itertools
import subprocess
import time

import pytest

from dfxdp.controller.binding import tap_name
from dfxdp.datapath.libbpf import Map, lib
from dfxdp.datapath.pipeline import pinned_counters
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, ifindex, run, wait_listening

UDP_PORT = 5000
_payloads = itertools.count()


def enable_ipv6(vm: str, wait: float = 30) -> str:
    """Turn IPv6 on for the VM's eth0 (test namespaces start without it); its link-local address once usable."""
    run(["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"], ns=vm)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        out = run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"], ns=vm).stdout
        if out and "tentative" not in out:  # duplicate address detection is over
            return out.split()[3].split("/")[0]
        time.sleep(0.2)
    raise AssertionError(f"{vm}: no usable IPv6 link-local address after {wait}s")


class Inbox:
    """What a VM's `nc -6 -u -l -k` receives on UDP_PORT, from any sender, over IPv4 and IPv6."""

    def __init__(self, cl: Cluster, vm: str):
        self.path = cl.logdir / f"inbox-{vm}"
        with open(self.path, "wb") as out:
            cl.topo.popen(["nc", "-6", "-u", "-l", "-k", str(UDP_PORT)], ns=vm, stdout=out,
                          stderr=subprocess.STDOUT)
        wait_listening(vm, UDP_PORT, proto="udp")

    def has(self, payload: str) -> bool:
        return payload in self.path.read_text()


class VM:
    def __init__(self, cl: Cluster, port, chassis):
        self.port, self.chassis = port, chassis
        self.ns = cl.plug(port, chassis)
        self.mac, self.ipv4 = port.mac_address, port.fixed_ips[0]["ip_address"]
        self.link_local = enable_ipv6(self.ns)


def send(sender: VM, address: str) -> str:
    """One datagram with a fresh payload from `sender` to `address` (IPv6 link-local on eth0, or IPv4)."""
    payload = f"datagram-{next(_payloads)}-from-{sender.port.id[:8]}"
    target = f"{address}%eth0" if ":" in address else address
    run(["nc", *(["-6"] if ":" in address else []), "-u", "-w", "1", target, str(UDP_PORT)], ns=sender.ns,
        input=payload + "\n")
    return payload


def arrives(inbox: Inbox, sender: VM, address: str, wait: float = 30) -> bool:
    """True once a datagram from `sender` to `address` reaches `inbox` (resent until the path has converged)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        payload = send(sender, address)
        for _ in range(10):
            if inbox.has(payload):
                return True
            time.sleep(0.1)
    return False


def knows(sender: VM, receiver: VM, address: str) -> None:
    """The neighbour that knows the receiver's MAC: a static entry, no neighbour discovery needed."""
    run(["ip", "-6", "neigh", "replace", address, "lladdr", receiver.mac, "dev", "eth0", "nud", "permanent"],
        ns=sender.ns)


def sg_ipv6_drops(chassis) -> int:
    return pinned_counters(chassis.bpffs)["drops"]["DROP_SG_IPV6"].get("packets", 0)


def sg_denied(vm: VM, direction: int) -> int:
    """Packets the security groups of `vm`'s port denied in `direction` on its chassis (`sg_stats`)."""
    maps = vm.chassis.bpffs / "maps"
    if_config, sg_stats = Map.pinned(maps / "if_config"), Map.pinned(maps / "sg_stats")
    try:
        port_key = if_config.lookup(ifindex(tap_name(vm.port.id), vm.chassis.ns)).port_key
        return sg_stats.lookup_sum({"port_key": port_key, "direction": direction}).get("denied_packets", 0)
    finally:
        if_config.close()
        sg_stats.close()


@pytest.fixture(scope="module")
def v6():
    with Topology("v6") as topo:
        cl = Cluster(topo, chassis=2)
        try:
            c = cl.connect()
            net = c.network.create_network(name="n")
            c.network.create_subnet(network_id=net.id, cidr="10.0.0.0/24", ip_version=4)
            v4only = c.network.create_security_group(name="udp-v4-only")
            c.network.create_security_group_rule(security_group_id=v4only.id, direction="ingress", ether_type="IPv4",
                                                 protocol="udp", port_range_min=UDP_PORT, port_range_max=UDP_PORT)

            def vm(chassis, **port):
                return VM(cl, c.network.create_port(network_id=net.id, binding_host_id=chassis.name, **port), chassis)

            ch1, ch2 = cl.chassis
            unfiltered = {"port_security_enabled": False, "security_group_ids": []}
            cl.guarded = vm(ch1, security_group_ids=[v4only.id])
            cl.open = vm(ch1, **unfiltered)      # the control receiver: nothing filters it
            cl.near = vm(ch1, **unfiltered)      # senders without port security, on the guarded VM's chassis
            cl.far = vm(ch2, **unfiltered)       # and on the other one (delivered through the tunnel)
            for v in (cl.guarded, cl.open, cl.near, cl.far):
                cl.wait_active(v.port.id)
            cl.inbox = {v.ns: Inbox(cl, v.ns) for v in (cl.guarded, cl.open)}
            for sender in (cl.near, cl.far, cl.guarded):
                for receiver in (cl.guarded, cl.open):
                    if sender is not receiver:
                        knows(sender, receiver, receiver.link_local)
            yield cl
        finally:
            cl.close()


@pytest.mark.parametrize("sender", ["near", "far"])
def test_ipv6_to_a_vm_whose_groups_allow_none_is_dropped(v6, sender):
    src, guarded, open_vm = getattr(v6, sender), v6.guarded, v6.open
    inbox = v6.inbox[guarded.ns]
    # controls: what the rules allow reaches the guarded VM's listener; IPv6 reaches a VM without port security
    assert arrives(inbox, src, guarded.ipv4), "IPv4 UDP allowed by the rules never arrived"
    assert arrives(v6.inbox[open_vm.ns], src, open_vm.link_local), "IPv6 to a VM without port security never arrived"
    drops, denied = sg_ipv6_drops(guarded.chassis), sg_denied(guarded, lib.SG_INGRESS)
    sent = [send(src, guarded.link_local) for _ in range(3)]
    # sent after the IPv6 datagrams on the same path: once it is in, they would be too
    assert arrives(inbox, src, guarded.ipv4)
    assert not any(inbox.has(p) for p in sent), "IPv6 reached a VM whose security groups allow none"
    assert sg_ipv6_drops(guarded.chassis) >= drops + len(sent)
    assert sg_denied(guarded, lib.SG_INGRESS) == denied + len(sent)  # nothing else was denied to it


def test_ipv6_from_a_vm_whose_groups_allow_none_is_dropped(v6):
    guarded, open_vm = v6.guarded, v6.open
    inbox = v6.inbox[open_vm.ns]
    # controls: the guarded VM's IPv4 gets out (egress rules allow any); another VM's IPv6 gets in
    assert arrives(inbox, guarded, open_vm.ipv4), "IPv4 from the guarded VM never arrived"
    assert arrives(inbox, v6.near, open_vm.link_local), "IPv6 to a VM without port security never arrived"
    drops, denied = sg_ipv6_drops(guarded.chassis), sg_denied(guarded, lib.SG_EGRESS)
    sent = [send(guarded, open_vm.link_local) for _ in range(3)]
    assert arrives(inbox, guarded, open_vm.ipv4)
    assert not any(inbox.has(p) for p in sent), "IPv6 left a VM whose security groups allow none"
    # the guarded VM's own neighbour discovery and MLD are dropped the same way, hence at least
    assert sg_ipv6_drops(guarded.chassis) >= drops + len(sent)
    assert sg_denied(guarded, lib.SG_EGRESS) >= denied + len(sent)
