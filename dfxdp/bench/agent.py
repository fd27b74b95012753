"""The agent's own cost at a size the API cannot fill quickly: `python -m dfxdp.bench.agent 100000`.

The control part of `dfxdp bench` measures through etcd and the API, and filling
100,000 ports through the API takes half an hour here. This measures the agent's
side alone, in this process: an NB like the control part's (networks of 800 ports
on one router, four other chassis, every port in a default group whose ingress
rule takes the group itself as remote, one port bound here) as the KVs a watch
snapshot hands the agent; the agent's cache loads it, its apps and reconciler
write a pipeline loaded into a private bpffs (a full pass), then one event each:
a new port elsewhere in the group (a new member: its /24 block of the security
groups' compile, in its event's pass), and one in no group; last, a restarted agent's first pass
over the same pins (it reads them back and writes only what differs). Times are wall clock on this machine;
memory is this process' RSS, which holds what the agent holds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Iterator

from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.cache import SelectiveCache
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import Pipeline
from dfxdp.nb.db.base import KV, Event

PORTS_PER_NETWORK = 800
CHASSIS, SIMULATED = "ch1", ("sim1", "sim2", "sim3", "sim4")
GROUP = "default-group"
BPFFS_ROOT = "/run/dfxdp-test"


@dataclass
class AgentPoint:
    ports: int
    cache_load_seconds: float        # the snapshot's documents into the selective cache
    full_pass_seconds: float         # every app's entries derived, encoded and written
    full_pass_cpu_seconds: float     # the same pass in this process' CPU time (the machine is shared)
    entries: int                     # written by the full pass
    rss_mib: float                   # after the full pass
    member_pass_ms: float            # a new port elsewhere, in the group: the pass (its block's compile)
    plain_pass_ms: float             # a new port elsewhere in no group
    scopes_per_event: int            # scopes the member's pass derived
    restart_pass_seconds: float      # a restarted agent's first pass over the same pins: derive, read back, compare
    restart_pass_cpu_seconds: float
    restart_written: int             # what that pass wrote (the pins held it all: nothing)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return int(next(line.split()[1] for line in f if line.startswith("VmRSS:"))) / 1024


def _port(n: int, net: int, host: str, **fields) -> dict:
    """A port document as NB stores it (the fields apps do not read included: the cache drops them);
    its `key`, unique as NB's, is given as it is put."""
    host_part = 16 + n  # router interface .1, DHCP port .2, the local port .3, the rest from .16
    third, fourth = divmod(net * 1024 + host_part, 256)
    ip = f"10.{128 + third // 256}.{third % 256}.{fourth}"
    name = "host-" + ip.replace(".", "-")
    return {"id": str(uuid.uuid4()), "network_id": f"net{net}", "binding:host_id": host,
            "mac_address": "fa:16:3e:%02x:%02x:%02x" % (net, host_part >> 8, host_part & 255), "fixed_ips": [
                {"ip_address": ip, "subnet_id": f"sub{net}"}], "device_owner": "", "device_id": "",
            "security_groups": [GROUP], "port_security_enabled": True, "allowed_address_pairs": [],
            "extra_dhcp_opts": [], "dns_name": "", "name": "", "status": "DOWN", "admin_state_up": True,
            "dns_assignment": [{"hostname": name, "ip_address": ip, "fqdn": name + ".openstacklocal."}],
            "binding:vnic_type": "normal", "binding:vif_type": "unbound", "binding:vif_details": {},
            "project_id": "bench", "description": "", "revision_number": 1,
            "created_at": "2026-11-25T00:00:00Z", "updated_at": "2026-11-25T00:00:00Z", **fields}


def snapshot(ports: int) -> tuple[Iterator[KV], dict]:
    """The NB's KVs at `ports` remote ports, made as they are read (a watch snapshot comes a
    page at a time: dfxdp/nb/db/base.py, range_pages), and the one port bound here."""
    local = _port(-13, 0, CHASSIS)

    def kvs() -> Iterator[KV]:
        count = 0

        def put(kind: str, doc: dict) -> KV:
            nonlocal count
            count += 1
            doc.setdefault("key", count)
            return KV(f"/dfxdp/nb/{kind}/{doc['id']}", json.dumps(doc).encode(), 1, 1)

        for i, name in enumerate((CHASSIS, *SIMULATED)):
            yield put("chassis", {"id": name, "name": name, "tunnel_ip": f"198.18.0.{11 + i}"})
        yield put("router", {"id": "r1", "routes": []})
        yield put("security_group", {"id": GROUP, "name": "default"})
        yield put("security_group_rule", {"id": "in", "security_group_id": GROUP, "direction": "ingress",
                                          "ethertype": "IPv4", "remote_group_id": GROUP})
        yield put("security_group_rule", {"id": "out", "security_group_id": GROUP, "direction": "egress",
                                          "ethertype": "IPv4"})
        networks = 1 + -(-ports // PORTS_PER_NETWORK)
        for net in range(networks):
            third = net * 4
            yield put("network", {"id": f"net{net}", "mtu": 1450, "router:external": False})
            yield put("subnet", {"id": f"sub{net}", "network_id": f"net{net}", "ip_version": 4, "enable_dhcp": True,
                                 "cidr": f"10.{128 + third // 256}.{third % 256}.0/22",
                                 "gateway_ip": f"10.{128 + third // 256}.{third % 256}.1"})
            for n, owner, device in ((-15, "network:router_interface", "r1"), (-14, "network:dhcp", f"dhcp-{net}")):
                yield put("port", _port(n, net, "", device_owner=owner, device_id=device, security_groups=[]))
        yield put("port", local)
        for i in range(ports):
            yield put("port", _port(i % PORTS_PER_NETWORK, 1 + i // PORTS_PER_NETWORK, SIMULATED[i % len(SIMULATED)]))
    return kvs(), local


def measure(ports: int) -> AgentPoint:
    kvs, local = snapshot(ports)
    bpffs = f"{BPFFS_ROOT}/agent-bench-{uuid.uuid4().hex[:8]}"
    libbpf.ensure_bpffs(bpffs)
    pipeline = Pipeline(f"{bpffs}/chassis").load()
    try:
        control = build_datapath_control(pipeline.maps)
        cache = SelectiveCache(CHASSIS)
        started = time.monotonic()
        cache.load(kvs, 1)
        load_seconds = time.monotonic() - started

        def view() -> LocalView:
            objs = cache.objects
            return LocalView(
                chassis=CHASSIS, tunnel_ip="198.18.0.11", networks=objs["network"], subnets=objs["subnet"],
                ports=objs["port"], routers=objs["router"], floatingips=objs["floatingip"],
                security_groups=objs["security_group"], security_group_rules=objs["security_group_rule"],
                chassis_by_name={c["name"]: c for c in objs["chassis"].values()}, local_ports={local["id"]: 1},
                underlay_ifindex=1, underlay_mac="02:00:00:00:00:01", underlay_mtu=1500,
                underlay_neighbors={f"198.18.0.{12 + i}": "02:00:00:00:01:01" for i in range(len(SIMULATED))},
                indexes=cache.indexes)

        cache.take_changes()
        started, cpu = time.monotonic(), time.process_time()
        result = control.apply(view())
        full_seconds, full_cpu, rss = time.monotonic() - started, time.process_time() - cpu, _rss_mib()
        if result.errors:
            raise RuntimeError(f"agent bench: {len(result.errors)} writes failed, first: {result.errors[0]}")

        def event(n: int, **fields) -> tuple[float, int]:
            doc = _port(PORTS_PER_NETWORK + n, 1, SIMULATED[0], key=10 * ports + n, **fields)
            started = time.monotonic()
            cache.apply(Event("put", f"/dfxdp/nb/port/{doc['id']}", json.dumps(doc).encode(), 2 + n))
            control.apply(view(), changes=cache.take_changes())
            return (time.monotonic() - started) * 1000, control.state.scopes_derived

        member_ms, scopes = event(1)
        plain_ms, _ = event(2, security_groups=[])
        del control  # a new agent over the same pins: its first pass audits what they hold
        started, cpu = time.monotonic(), time.process_time()
        restart = build_datapath_control(pipeline.maps).apply(view())
        restart_seconds, restart_cpu = time.monotonic() - started, time.process_time() - cpu
        return AgentPoint(ports, load_seconds, full_seconds, full_cpu, result.written, rss, member_ms,
                          plain_ms, scopes, restart_seconds, restart_cpu, restart.written)
    finally:
        pipeline.destroy()
        subprocess.run(["umount", "-l", bpffs], check=False)
        os.rmdir(bpffs)


if __name__ == "__main__":
    for size in (int(arg) for arg in sys.argv[1:] or ["100000"]):
        print(json.dumps(asdict(measure(size))))
