"""Default SNAT's placement (rendezvous hashing over live candidates, a new chassis when the
chosen one's heartbeat stops) and its flows on the SNAT chassis and on the others; ARP for the
gateway address answered, next hops learned."""
from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.snat import (SNAT_DOWN_TIME, TABLE_SNAT_DELIVER, TABLE_SNAT_IN, TABLE_SNAT_INGRESS,
                                        TABLE_SNAT_NEXT_HOP, TABLE_SNAT_OUT, SnatApp, snat_chassis, snat_zone)
from dfxdp.controller.binding import tap_name
from dfxdp.controller.frames import ARP_REPLY, ARP_REQUEST, arp_frame, ipv4_udp_frame, parse_arp

NOW = 10_000.0
TUNNEL, EXTERNAL = 9, 8
GW_IP, GW_MAC, RI_MAC = "198.19.0.10", "fa:16:3e:00:00:aa", "fa:16:3e:00:00:01"


def view(chassis: str, enable_snat: bool = True, stale: tuple[str, ...] = ()) -> LocalView:
    nets = {"blue": {"id": "blue", "key": 5}, "ext": {"id": "ext", "key": 7, "router:external": True}}
    subnets = {"sb": {"id": "sb", "network_id": "blue", "cidr": "10.0.0.0/24"},
               "se": {"id": "se", "network_id": "ext", "cidr": "198.19.0.0/24", "gateway_ip": "198.19.0.1"}}
    router = {"id": "r", "key": 3, "external_gateway_info": {"network_id": "ext", "enable_snat": enable_snat}}
    ports = {
        "ri": {"id": "ri", "network_id": "blue", "device_id": "r", "device_owner": "network:router_interface",
               "mac_address": RI_MAC, "fixed_ips": [{"subnet_id": "sb", "ip_address": "10.0.0.1"}]},
        "gw": {"id": "gw", "network_id": "ext", "device_id": "r", "device_owner": "network:router_gateway",
               "mac_address": GW_MAC, "fixed_ips": [{"subnet_id": "se", "ip_address": GW_IP}]},
    }
    for n in (1, 2, 3):
        ports[f"v{n}"] = {"id": f"v{n}", "key": 10 + n, "network_id": "blue", "binding:host_id": f"ch{n}",
                          "mac_address": f"fa:16:3e:00:01:0{n}", "fixed_ips": [{"ip_address": f"10.0.0.{10 + n}"}]}
    every = {f"ch{n}": {"name": f"ch{n}", "tunnel_ip": f"198.18.0.{10 + n}", "snat_physnets": ["provider"],
                        "heartbeat": NOW - (SNAT_DOWN_TIME + 1 if f"ch{n}" in stale else 5)} for n in (1, 2, 3, 4)}
    local_port = f"v{chassis[2:]}"
    return LocalView(chassis=chassis, tunnel_ip=every[chassis]["tunnel_ip"], networks=nets, subnets=subnets,
                     ports=ports, routers={"r": router}, chassis_by_name=every, local_ports={local_port: 20},
                     bridges={"provider": (30, "02:00:00:00:00:30")}, bridge_mappings={"provider": "ext0"},
                     ofports={tap_name(local_port): 1, "vxlan0": TUNNEL, "ext0": EXTERNAL})


def test_one_chassis_among_those_hosting_the_routers_ports_the_same_everywhere():
    chosen = {snat_chassis(view(f"ch{n}"), view(f"ch{n}").routers["r"], NOW) for n in (1, 2, 3)}
    assert len(chosen) == 1 and chosen <= {"ch1", "ch2", "ch3"}  # ch4 hosts no port of the router


def test_another_chassis_takes_over_when_the_heartbeat_stops_and_only_then():
    v = view("ch1")
    first = snat_chassis(v, v.routers["r"], NOW)
    v2 = view("ch1", stale=(first,))
    second = snat_chassis(v2, v2.routers["r"], NOW)
    assert second not in (None, first)
    others = tuple(c for c in ("ch1", "ch2", "ch3") if c not in (first, second))
    v3 = view("ch1", stale=others)  # a chassis that was not chosen going away moves nothing
    assert snat_chassis(v3, v3.routers["r"], NOW) == first
    v4 = view("ch1", stale=("ch1", "ch2", "ch3"))
    assert snat_chassis(v4, v4.routers["r"], NOW) is None


def test_no_candidate_without_snat_physnet_and_nothing_with_enable_snat_false():
    v = view("ch1")
    for c in v.chassis_by_name.values():
        c["snat_physnets"] = ["other"]
    assert snat_chassis(v, v.routers["r"], NOW) is None
    v = view("ch1", enable_snat=False)
    assert snat_chassis(v, v.routers["r"], NOW) is None
    app = SnatApp(clock=lambda: NOW)
    assert [f for f in app.flows(v) if f.priority] == []


def chosen_and_other():
    v = view("ch1")
    chosen = snat_chassis(v, v.routers["r"], NOW)
    other = next(c for c in ("ch1", "ch2", "ch3") if c != chosen)
    return chosen, other


def test_the_snat_chassis_nats_to_the_gateway_and_delivers_only_tracked_replies():
    chosen, _ = chosen_and_other()
    v = view(chosen)
    app = SnatApp(clock=lambda: NOW)
    flows = list(app.flows(v))
    zone = snat_zone(v.routers["r"])
    out = [f for f in flows if f.table == TABLE_SNAT_OUT and f.priority == 100]
    assert len(out) == 1 and dict(out[0].match)["ipv4_src"] == ("10.0.0.0", "255.255.255.0")
    assert out[0].actions == (("set_field", "eth_src", GW_MAC), ("dec_ttl",),
                              ("ct", True, zone, TABLE_SNAT_NEXT_HOP, GW_IP))
    internal = [dict(f.match)["ipv4_dst"] for f in flows if f.table == TABLE_SNAT_OUT and f.priority == 200]
    assert sorted(map(str, internal)) == sorted(map(str, [("10.0.0.0", "255.255.255.0"), GW_IP]))
    assert any(f.table == TABLE_SNAT_IN and ("ct", False, zone, TABLE_SNAT_DELIVER, None) in f.actions for f in flows)
    deliveries = [f for f in flows if f.table == TABLE_SNAT_DELIVER and f.priority == 100]
    assert len(deliveries) == 6  # three ports, established and related
    for f in deliveries:
        state, mask = dict(f.match)["ct_state"]
        assert state & 0x20 and state & 0x06 and mask & 0x10 and not state & 0x10  # +trk, +est|+rel, -inv
    local = [f for f in deliveries if dict(f.match)["ipv4_dst"] == f"10.0.0.1{chosen[2:]}"]
    assert local and all(f.actions[-1] == ("output", 1) for f in local)
    remote = [f for f in deliveries if f not in local]
    assert all(f.actions[-1] == ("output", TUNNEL) and ("set_field", "tunnel_id", 5) in f.actions for f in remote)
    assert app.snat_zones() == {"r": zone}
    assert app.chassis_facts(v) == {"snat_physnets": ["provider"], "snat_routers": ["r"]}
    ingress = [f for f in flows if f.table == TABLE_SNAT_INGRESS and dict(f.match).get("in_port") == EXTERNAL]
    assert {dict(f.match)["eth_type"] for f in ingress} == {0x0806, 0x0800}


def test_other_chassis_tunnel_to_the_snat_chassis_and_never_back():
    chosen, other = chosen_and_other()
    v = view(other)
    app = SnatApp(clock=lambda: NOW)
    flows = [f for f in app.flows(v) if f.priority]
    assert {f.table for f in flows} == {TABLE_SNAT_OUT}
    to_tunnel = [f for f in flows if f.priority == 100]
    assert len(to_tunnel) == 1 and to_tunnel[0].actions == (
        ("set_field", "tun_ipv4_dst", v.chassis_by_name[chosen]["tunnel_ip"]), ("set_field", "tunnel_id", 5),
        ("output", TUNNEL))
    assert [dict(f.match)["in_port"] for f in flows if f.priority == 110] == [TUNNEL]
    assert app.snat_zones() == {} and app.chassis_facts(v)["snat_routers"] == []


class Sender:
    def __init__(self):
        self.sent = []

    def send(self, ifindex, frame):
        self.sent.append((ifindex, frame))


def test_arp_for_the_gateway_answered_and_next_hops_resolved():
    chosen, _ = chosen_and_other()
    v = view(chosen)
    app = SnatApp(clock=lambda: NOW)
    app._sender = Sender()
    list(app.flows(v))
    next_hops = [f for f in app.flows(v) if f.table == TABLE_SNAT_NEXT_HOP and f.priority]
    assert all(f.actions == (("controller",),) for f in next_hops)  # nothing resolved yet
    # A NATed frame to an unresolved outside host: the agent asks for its MAC.
    frame = ipv4_udp_frame(bytes(6), bytes(6), GW_IP, "198.19.0.100", 1, 2, b"x")
    assert not app.on_packet_in(v, None, frame)
    assert parse_arp(app._sender.sent[-1][1]) == (ARP_REQUEST, bytes.fromhex(GW_MAC.replace(":", "")), GW_IP,
                                                  "198.19.0.100")
    # Off-link: the external subnet's gateway is asked instead.
    app.on_packet_in(v, None, ipv4_udp_frame(bytes(6), bytes(6), GW_IP, "203.0.113.9", 1, 2, b"x"))
    assert parse_arp(app._sender.sent[-1][1])[3] == "198.19.0.1"
    # The outside host asks for the gateway address: answered, and learned.
    host_mac = bytes.fromhex("020000000064")
    request = arp_frame(ARP_REQUEST, host_mac, "198.19.0.100", bytes(6), GW_IP)
    assert app.on_packet_in(v, None, request)
    ifindex, reply = app._sender.sent[-1]
    assert ifindex == 30 and parse_arp(reply) == (ARP_REPLY, bytes.fromhex(GW_MAC.replace(":", "")), GW_IP,
                                                  "198.19.0.100")
    assert reply[:6] == host_mac
    hop = [f for f in app.flows(v) if f.table == TABLE_SNAT_NEXT_HOP and f.priority == 100]
    assert [f.actions for f in hop] == [(("set_field", "eth_dst", "02:00:00:00:00:64"), ("output", EXTERNAL))]
    # ARP for an address that is not a gateway here: ignored.
    assert not app.on_packet_in(v, None, arp_frame(ARP_REQUEST, host_mac, "198.19.0.100", bytes(6), "198.19.0.77"))


def test_no_snat_on_a_vlan_external_network():
    v = view("ch1")
    v.networks[v.routers["r"]["external_gateway_info"]["network_id"]]["provider:network_type"] = "vlan"
    assert snat_chassis(v, v.routers["r"], NOW) is None
