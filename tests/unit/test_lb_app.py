"""The LB app's decisions, without a datapath: which VIPs get entries, with which
flags and rings, which members are in service, the VIP subnet's router MAC."""
import socket

from dfxdp.controller.apps.lb import LoadBalancerApp
from dfxdp.controller.maglev import RING_SIZE
from dfxdp.datapath.libbpf import lib

from tests.bpf.lb_fixtures import RIF_B, VIP, build_view

VIP_BE = int.from_bytes(socket.inet_aton(VIP), "little")


def entries(view):
    out = {}
    for e in LoadBalancerApp().desired(view):
        key = tuple(sorted(e.key.items())) if isinstance(e.key, dict) else e.key
        out[(e.map, key)] = e.value
    return out


def vip(port, proto=socket.IPPROTO_TCP):
    return ("lb_vips", tuple(sorted({"vip": VIP_BE, "port": socket.htons(port), "proto": proto}.items())))


def test_each_listener_points_at_its_pools_ring_with_its_algorithms_flags():
    got = entries(build_view(1, 2, 3, 4, 5))
    assert got[vip(80)]["flags"] == 0 and got[vip(80)]["ring_key"] == 101
    assert got[vip(81)]["flags"] == lib.LB_F_HASH_SRC_IP
    assert got[vip(53, socket.IPPROTO_UDP)]["flags"] == lib.LB_F_ROUND_ROBIN
    assert got[vip(83)]["flags"] == lib.LB_F_HASH_SRC_IP  # ROUND_ROBIN with SOURCE_IP persistence
    assert got[("lb_vips", tuple(sorted({"vip": VIP_BE, "proto": socket.IPPROTO_ICMP}.items())))]["ring_key"] == 0
    assert bytes(got[vip(80)]["gw_mac"]) == bytes(int(x, 16) for x in RIF_B.split(":"))
    ring = got[("lb_rings", 101)]
    assert len(ring) == RING_SIZE and set(ring) == {1, 2, 3}


def test_members_out_of_service_leave_the_ring_but_keep_their_address():
    view = build_view(1, 2, 3, 4, 5)
    view.members["p-hash-1"]["admin_state_up"] = False
    view.members["p-hash-2"]["weight"] = 0
    view.members["p-hash-3"]["operating_status"] = "ERROR"
    got = entries(view)
    assert set(got[("lb_rings", 101)]) == {0}  # no member up: every slot empty
    assert all(("lb_backends", key) in got for key in (1, 2, 3))


def test_nothing_for_a_load_balancer_down_or_out_of_view():
    view = build_view(1, 2, 3, 4, 5)
    view.loadbalancers["lb1"]["admin_state_up"] = False
    assert entries(view) == {}
    view = build_view(1, 2, 3, 4, 5)
    del view.networks["blue"]  # the VIP's network is not this chassis' concern
    assert entries(view) == {}
