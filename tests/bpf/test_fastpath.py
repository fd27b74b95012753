"""The established-flow fast path through BPF_PROG_TEST_RUN: for each kind of flow
(routed, bridged, tunnelled, floating IP both ways, load-balanced) the frame it
forwards from the cache is byte for byte the one the stages produce; its counters
still count; and every change a cached decision depends on (a rule removed, port
security turned on, a route deleted, a neighbour's MAC, a port moving, a new
pipeline, a hook) stops the cached forwarding on the very next frame."""
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from dfxdp.controller.apps import LocalView
from dfxdp.controller.apps.sg import SecurityGroupApp
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.datapath import fastpath
from dfxdp.datapath.libbpf import lib, to_dict
from dfxdp.datapath.pipeline import Pipeline, object_path
from dfxdp.datapath.pktrun import run_packet
from dfxdp.trace import Trace

from .lb_fixtures import CLIENT, CLIENT_MAC, VIP, VIP_MAC, Programmer
from .lb_fixtures import build_view as lb_view

BLUE, GREEN, EXT = {"id": "blue", "key": 10}, {"id": "green", "key": 20}, {"id": "ext", "key": 30, "router:external": True}
VM_B, VM_B2, VM_G, VM_G2 = "fa:16:3e:00:01:01", "fa:16:3e:00:01:02", "fa:16:3e:00:02:01", "fa:16:3e:00:02:02"
RIF_B, RIF_G, GW, FIP_MAC = "fa:16:3e:00:0a:01", "fa:16:3e:00:0a:02", "fa:16:3e:00:0a:03", "fa:16:3e:00:0f:01"
OUTSIDE, OUTSIDE_MAC, OUTSIDE_MAC2 = "198.19.0.100", "02:00:00:00:99:99", "02:00:00:00:99:98"
CH2, CH3 = "198.18.0.12", "198.18.0.13"
PAYLOAD = Raw(b"fast path" * 3)


def rule(rid, group, direction, proto=None, lo=None, hi=None):
    return {"id": rid, "security_group_id": group, "direction": direction, "ethertype": "IPv4", "protocol": proto,
            "port_range_min": lo, "port_range_max": hi, "remote_ip_prefix": None, "remote_group_id": None}


RULES = [rule("g-in-udp", "g", "ingress", "udp"), rule("g-in-tcp", "g", "ingress", "tcp", 5201, 5201),
         rule("g-out", "g", "egress"), rule("ssh-in", "ssh", "ingress", "tcp", 22, 22), rule("ssh-out", "ssh", "egress")]


def port(pid, key, net, mac, ip, subnet, host="", owner="", device="", portsec=False, groups=()):
    return {"id": pid, "key": key, "network_id": net["id"], "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}], "port_security_enabled": portsec,
            "security_groups": list(groups), "allowed_address_pairs": [], "device_owner": owner, "device_id": device}


def world_view(ifs) -> LocalView:
    """Two networks behind a distributed router with an external gateway; VMs with a stateful group
    (vm-b2 without port security), one on another chassis; a floating IP for vm-b."""
    vm_b, vm_b2, vm_g, underlay, external = ifs
    ports = [
        port("vm-b", 1, BLUE, VM_B, "10.0.0.5", "sb", "ch1", portsec=True, groups=["g"]),
        port("vm-b2", 8, BLUE, VM_B2, "10.0.0.6", "sb", "ch1"),
        port("vm-g", 2, GREEN, VM_G, "10.1.0.5", "sg", "ch1", portsec=True, groups=["g"]),
        port("vm-g2", 3, GREEN, VM_G2, "10.1.0.6", "sg", "ch2", portsec=True, groups=["g"]),
        port("rif-b", 4, BLUE, RIF_B, "10.0.0.1", "sb", owner="network:router_interface", device="r1"),
        port("rif-g", 5, GREEN, RIF_G, "10.1.0.1", "sg", owner="network:router_interface", device="r1"),
        port("gw", 6, EXT, GW, "198.19.0.10", "se", owner="network:router_gateway", device="r1"),
        port("fip-port", 7, EXT, FIP_MAC, "198.19.0.20", "se", owner="network:floatingip", device="fip1"),
    ]
    return LocalView(
        chassis="ch1", tunnel_ip="198.18.0.11", networks={n["id"]: n for n in (BLUE, GREEN, EXT)},
        subnets={"sb": {"id": "sb", "cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1"},
                 "sg": {"id": "sg", "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.1"},
                 "se": {"id": "se", "cidr": "198.19.0.0/24", "gateway_ip": "198.19.0.1"}},
        ports={p["id"]: p for p in ports}, security_group_rules={r["id"]: r for r in RULES},
        routers={"r1": {"id": "r1", "key": 77, "routes": [{"destination": "172.16.0.0/16", "nexthop": "10.1.0.6"}]}},
        floatingips={"fip1": {"id": "fip1", "floating_ip_address": "198.19.0.20", "floating_network_id": "ext",
                              "port_id": "vm-b", "fixed_ip_address": "10.0.0.5", "router_id": "r1"}},
        chassis_by_name={"ch2": {"tunnel_ip": CH2}, "ch3": {"tunnel_ip": CH3}},
        local_ports={"vm-b": vm_b, "vm-b2": vm_b2, "vm-g": vm_g}, underlay_ifindex=underlay,
        underlay_mac="02:00:00:00:00:01", underlay_neighbors={CH2: "02:00:00:00:00:02", CH3: "02:00:00:00:00:04"},
        bridges={"provider": (external, "02:00:00:00:00:03")})


class World:
    def __init__(self, pipe, ifs):
        self.pipe, self.ifs = pipe, dict(zip(("vm-b", "vm-b2", "vm-g", "underlay", "external"), ifs))
        self.changes = []  # what NB changed since: a view is built anew for each pass, as the agent does
        self.control = build_datapath_control(pipe.maps)
        self.change(lambda view: None)

    def change(self, edit) -> None:
        """NB changes (`edit` of the view), then one agent pass, its conntrack upkeep included."""
        self.changes.append(edit)
        view = world_view(list(self.ifs.values()))
        for each in self.changes:
            each(view)
        result = self.control.apply(view)
        assert not result.errors, result.errors
        sg = next(app for app in self.control.apps if isinstance(app, SecurityGroupApp))
        sg.upkeep(view, self.pipe.maps)

    def send(self, frame, iface):
        return run_packet(self.pipe, frame, ingress_ifindex=self.ifs[iface])


@pytest.fixture
def world(pipeline, test_iface):
    return World(pipeline, [test_iface()[1] for _ in range(5)])


def udp(sport=40000, dport=5201):
    return UDP(sport=sport, dport=dport) / PAYLOAD


FLOWS = {
    "routed": (lambda: Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="10.1.0.5") / udp(), "vm-b"),
    "bridged": (lambda: Ether(src=VM_B, dst=VM_B2) / IP(src="10.0.0.5", dst="10.0.0.6") / udp(), "vm-b"),
    "routed-tunnelled": (lambda: Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="10.1.0.6") / udp(), "vm-b"),
    "bridged-tunnelled": (lambda: Ether(src=VM_G, dst=VM_G2) / IP(src="10.1.0.5", dst="10.1.0.6") / udp(), "vm-g"),
    "static-route-tunnelled": (lambda: Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="172.16.0.9") / udp(),
                               "vm-b"),
    "floating-ip-in": (lambda: Ether(src=OUTSIDE_MAC, dst=FIP_MAC) / IP(src=OUTSIDE, dst="198.19.0.20") /
                       udp(7000, 5201), "external"),
    "floating-ip-out": (lambda: Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst=OUTSIDE) / udp(5201, 7000),
                        "vm-b"),
}


def is_fast(res) -> bool:
    return bool(res.meta["flags"] & lib.PKT_F_FAST)


def fast_count(pipe, outcome: str) -> int:
    return fastpath.stats(pipe.maps)[outcome]["packets"]


def slow_then_fast(send, frame, pipe):
    """The frame as the stages forward it (fast path off), then recorded, then from the cache."""
    fastpath.disable(pipe.maps)
    slow = send(frame)
    fastpath.invalidate(pipe.maps)
    recorded_before = fast_count(pipe, "FAST_RECORDED")
    recording = send(frame)
    assert fast_count(pipe, "FAST_RECORDED") == recorded_before + 1
    fast = send(frame)
    assert not is_fast(slow) and not is_fast(recording) and is_fast(fast)
    assert fast.stages == ["STAGE_ENTRY_PORT"]  # no stage ran
    for res in (recording, fast):
        assert (res.verdict, res.meta["out_ifindex"], res.data) == (slow.verdict, slow.meta["out_ifindex"], slow.data)
    return slow, fast


def learn_outside(world, mac=OUTSIDE_MAC):
    """The outside host's MAC, as the external NIC learns it from its frames."""
    res = world.send(Ether(src=mac, dst=FIP_MAC) / IP(src=OUTSIDE, dst="198.19.0.20") / udp(7001, 5201), "external")
    assert res.verdict == "XDP_REDIRECT"


@pytest.mark.parametrize("flow", list(FLOWS))
def test_cached_forwarding_is_byte_identical_to_the_stages(world, flow):
    build, iface = FLOWS[flow]
    learn_outside(world)
    slow, fast = slow_then_fast(lambda f: world.send(f, iface), build(), world.pipe)
    assert slow.verdict == "XDP_REDIRECT"
    if "tunnelled" in flow:
        assert fast.packet.haslayer(VXLAN) and fast.meta["flags"] & lib.PKT_F_DST_REMOTE
    if flow.startswith("floating-ip"):
        assert fast.meta["out_ifindex"] == (world.ifs["vm-b"] if flow.endswith("in") else world.ifs["external"])


def test_load_balanced_flow_is_byte_identical(pipeline, test_iface):
    ifs = [test_iface()[1] for _ in range(5)]
    Programmer(pipeline)(lb_view(*ifs))

    def send(frame):
        return run_packet(pipeline, frame, ingress_ifindex=ifs[0])

    def to_vip(flags):
        return Ether(src=CLIENT_MAC, dst=VIP_MAC) / IP(src=CLIENT, dst=VIP) / TCP(sport=33000, dport=80,
                                                                                  flags=flags) / PAYLOAD

    syn = send(to_vip("S"))  # the flow picks its member
    assert syn.verdict == "XDP_REDIRECT" and not is_fast(syn)
    slow, fast = slow_then_fast(send, to_vip("A"), pipeline)
    assert fast.packet[IP].dst != VIP and fast.packet[TCP].dport != 80  # DNATed to the member, port too
    assert (fast.packet[IP].dst, fast.packet[TCP].dport) == (syn.packet[IP].dst, syn.packet[TCP].dport)


def test_tcp_control_segments_never_take_the_fast_path(world):
    def b_to_g(flags):
        return world.send(Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="10.1.0.5") /
                          TCP(sport=41000, dport=5201, flags=flags), "vm-b")

    assert b_to_g("S").verdict == "XDP_REDIRECT"
    synack = world.send(Ether(src=VM_G, dst=RIF_G) / IP(src="10.1.0.5", dst="10.0.0.5") /
                        TCP(sport=5201, dport=41000, flags="SA"), "vm-g")
    assert synack.verdict == "XDP_REDIRECT"
    assert not is_fast(b_to_g("A"))  # recorded: the connection is established
    assert is_fast(b_to_g("A")) and is_fast(b_to_g("PA"))
    for flags in ("FA", "R", "S"):
        assert not is_fast(b_to_g(flags))


def test_a_segment_of_a_connection_never_opened_is_never_cached(world):
    """No SYN seen: the stages drop it every time, nothing is recorded."""
    frame = Ether(src=VM_B, dst=RIF_B) / IP(src="10.0.0.5", dst="10.1.0.5") / TCP(sport=42000, dport=5201, flags="A")
    for _ in range(3):
        res = world.send(frame, "vm-b")
        assert res.verdict == "XDP_DROP" and res.drop_reason == "DROP_CT_NOT_SYN" and not is_fast(res)


def sg_allowed(pipe, port_key: int, direction: int) -> int:
    values = pipe.maps["sg_stats"].lookup({"port_key": port_key, "direction": direction})
    return sum(to_dict(v)["allowed_packets"] for v in values) if values else 0


def test_fast_path_frames_are_counted(world):
    build, _ = FLOWS["routed"]
    slow_then_fast(lambda f: world.send(f, "vm-b"), build(), world.pipe)
    before = (sg_allowed(world.pipe, 1, lib.SG_EGRESS), sg_allowed(world.pipe, 2, lib.SG_INGRESS),
              fast_count(world.pipe, "FAST_HIT"))
    res = world.send(build(), "vm-b")
    assert is_fast(res)
    assert res.counters["verdicts"]["XDP_REDIRECT"]["packets"] == 1
    assert res.counters["stages"] == {"STAGE_ENTRY_PORT": {"packets": 1, "bytes": len(build())}}
    after = (sg_allowed(world.pipe, 1, lib.SG_EGRESS), sg_allowed(world.pipe, 2, lib.SG_INGRESS),
             fast_count(world.pipe, "FAST_HIT"))
    assert after == tuple(n + 1 for n in before)
    from dfxdp.metrics.datapath import DatapathCollector

    fast, = [family for family in DatapathCollector(lambda: world.pipe.maps).collect()
             if family.name == "dfxdp_fast_path_packets"]
    assert {s.labels["outcome"]: s.value for s in fast.samples if s.name.endswith("_total")}["FAST_HIT"] == after[2]


def cache(world, flow):
    """A flow forwarded from the cache; returns its frame, ingress and cached output."""
    build, iface = FLOWS[flow]
    world.send(build(), iface)
    res = world.send(build(), iface)
    assert is_fast(res), flow
    return build, iface, res


def test_removed_rule_stops_the_cached_flow(world):
    build, iface, _ = cache(world, "routed")
    world.change(lambda view: view.security_group_rules.pop("g-in-udp"))
    res = world.send(build(), iface)
    assert not is_fast(res) and res.verdict == "XDP_DROP" and res.drop_reason == "DROP_SG_INGRESS"


def test_port_security_turned_on_stops_the_cached_flow(world):
    build, iface, _ = cache(world, "bridged")  # to vm-b2, no port security
    world.change(lambda view: view.ports["vm-b2"].update(port_security_enabled=True, security_groups=["ssh"]))
    res = world.send(build(), iface)
    assert not is_fast(res) and res.verdict == "XDP_DROP" and res.drop_reason == "DROP_SG_INGRESS"


def test_deleted_route_stops_the_cached_flow(world):
    build, iface, cached = cache(world, "static-route-tunnelled")
    assert cached.meta["flags"] & lib.PKT_F_DST_REMOTE
    world.change(lambda view: view.routers["r1"].update(routes=[]))
    res = world.send(build(), iface)
    assert not is_fast(res) and not res.meta["flags"] & lib.PKT_F_DST_REMOTE


def test_changed_neighbour_mac_stops_the_cached_flow(world):
    build, iface, cached = cache(world, "routed")
    assert cached.packet[Ether].dst == VM_G
    world.change(lambda view: view.ports["vm-g"].update(mac_address="fa:16:3e:00:02:99"))
    res = world.send(build(), iface)
    assert not is_fast(res) and res.verdict == "XDP_REDIRECT" and res.packet[Ether].dst == "fa:16:3e:00:02:99"


def test_relearned_outside_mac_stops_the_cached_flow(world):
    """The external neighbour is learned by the datapath itself: no generation changes, the
    fast path checks the learned MAC on every frame."""
    learn_outside(world)
    build, iface, cached = cache(world, "floating-ip-out")
    assert cached.packet[Ether].dst == OUTSIDE_MAC
    learn_outside(world, OUTSIDE_MAC2)
    res = world.send(build(), iface)
    assert not is_fast(res) and res.packet[Ether].dst == OUTSIDE_MAC2
    assert is_fast(world.send(build(), iface))  # recorded again with the new MAC


def test_outside_host_with_a_new_mac_does_not_ride_the_cache(world):
    build, iface, _ = cache(world, "floating-ip-in")
    learn_outside(world, OUTSIDE_MAC2)  # the outside address now answers from another MAC
    res = world.send(build(), iface)  # a frame from the old MAC: learned again by the stages
    assert not is_fast(res) and res.verdict == "XDP_REDIRECT"


def test_port_moving_to_another_chassis_stops_the_cached_flow(world):
    build, iface, cached = cache(world, "routed-tunnelled")
    assert cached.packet[IP].dst == CH2
    world.change(lambda view: view.ports["vm-g2"].update({"binding:host_id": "ch3"}))
    res = world.send(build(), iface)
    assert not is_fast(res) and res.packet[IP].dst == CH3


def test_new_pipeline_stops_cached_flows(world):
    build, iface, _ = cache(world, "routed")
    again = Pipeline(world.pipe.dir).load()  # an upgrade: new programs over the pinned maps
    try:
        assert not is_fast(world.send(build(), iface))
        assert is_fast(world.send(build(), iface))
    finally:
        again.close()


def test_plugged_hook_sees_every_frame(world):
    from dfxdp.datapath.hooks import HookSlots

    build, iface, _ = cache(world, "routed")
    with HookSlots(world.pipe.dir) as slots:
        slots.attach(object_path("hook_punt_dhcp"))
    for _ in range(2):
        res = world.send(build(), iface)
        assert not is_fast(res) and any(stage.startswith("STAGE_HOOK_") for stage in res.stages)


def test_a_decision_older_than_the_revalidation_interval_is_decided_again(world):
    build, iface, _ = cache(world, "routed")
    flows = world.pipe.maps["fast_flows"]
    (key, entry), = flows.items()
    flows.update(key, {**to_dict(entry), "decided_ns": 0})
    stale = fast_count(world.pipe, "FAST_STALE")
    assert not is_fast(world.send(build(), iface))
    assert fast_count(world.pipe, "FAST_STALE") == stale + 1
    assert is_fast(world.send(build(), iface))


def test_generation_zero_turns_the_fast_path_off(world):
    build, iface, _ = cache(world, "routed")
    fastpath.disable(world.pipe.maps)
    recorded = fast_count(world.pipe, "FAST_RECORDED")
    for _ in range(2):
        assert not is_fast(world.send(build(), iface))
    assert fast_count(world.pipe, "FAST_RECORDED") == recorded


def test_ttl_one_is_answered_by_the_router_not_forwarded_from_the_cache(world):
    build, iface, _ = cache(world, "routed")
    frame = build()
    frame[IP].ttl = 1
    res = world.send(frame, iface)
    assert not is_fast(res) and res.verdict == "XDP_REDIRECT" and res.meta["out_ifindex"] == world.ifs["vm-b"]


def test_trace_tells_the_fast_path(world):
    build, iface, res = cache(world, "routed")
    trace = Trace(res, "vm-b")
    assert "fast path" in trace.story()
    assert trace.as_dict()["fast_path"] is True
    assert "fast path" not in Trace(world.send(FLOWS["bridged"][0](), "vm-b"), "vm-b").story()
