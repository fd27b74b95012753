"""The flood app's flows from a LocalView: every flow stays inside its network, a frame
from the tunnel never goes back into it, head-end replication reaches exactly the
chassis hosting ports of the network."""
from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.apps.fallback_sg import TABLE_SG_INGRESS
from dfxdp.controller.apps.flood import TABLE_FLOOD, TABLE_INGRESS, TABLE_L2, FloodApp
from dfxdp.controller.apps.snat import TABLE_SNAT_OUT
from dfxdp.controller.binding import tap_name

TUNNEL = 9


def view():
    nets = {"blue": {"id": "blue", "key": 5}, "red": {"id": "red", "key": 6}}
    ports = {}
    for key, (pid, net, host, mac) in enumerate((("b-local-1", "blue", "ch1", "fa:16:3e:00:00:01"),
                                ("b-local-2", "blue", "ch1", "fa:16:3e:00:00:02"),
                                ("b-remote-2", "blue", "ch2", "fa:16:3e:00:00:03"),
                                ("r-local-1", "red", "ch1", "fa:16:3e:00:00:04"),
                                ("r-remote-3", "red", "ch3", "fa:16:3e:00:00:05"),
                                ("b-router", "blue", "", "fa:16:3e:00:00:06")), start=1):
        ports[pid] = {"id": pid, "key": key, "network_id": net, "binding:host_id": host, "mac_address": mac}
    local = {"b-local-1": 11, "b-local-2": 12, "r-local-1": 13}
    chassis = {f"ch{i}": {"name": f"ch{i}", "tunnel_ip": f"198.18.0.{10 + i}"} for i in (1, 2, 3)}
    ofports = {tap_name(pid): n - 10 for pid, n in local.items()} | {"vxlan0": TUNNEL}
    return LocalView(chassis="ch1", tunnel_ip="198.18.0.11", networks=nets, ports=ports, local_ports=local,
                     chassis_by_name=chassis, ofports=ofports)


def outputs(flow):
    return [a[1] for a in flow.actions if a[0] == "output"]


def test_flows_never_cross_networks_nor_go_back_into_the_tunnel():
    flows = list(FloodApp().flows(view()))
    by_net = {5: {1, 2}, 6: {3}}
    for flow in flows:
        match = dict(flow.match)
        if flow.table in (TABLE_L2, TABLE_FLOOD) and "metadata" in match:
            local_outputs = set(outputs(flow)) - {TUNNEL}
            assert local_outputs <= by_net[match["metadata"]], flow
        if flow.table == TABLE_FLOOD and match.get("in_port") == TUNNEL:
            assert TUNNEL not in outputs(flow)
    ingress = {dict(f.match).get("in_port"): f for f in flows if f.table == TABLE_INGRESS and f.priority == 100
               and "tunnel_id" not in dict(f.match)}
    assert {port: f.actions[0][1] for port, f in ingress.items()} == {1: 5, 2: 5, 3: 6}


def test_head_end_replication_to_the_chassis_of_the_network_only():
    flows = list(FloodApp().flows(view()))
    floods = {dict(f.match)["metadata"]: f for f in flows if f.table == TABLE_FLOOD and f.priority == 50}
    tun_dsts = {key: [a[2] for a in f.actions if a[0] == "set_field" and a[1] == "tun_ipv4_dst"]
                for key, f in floods.items()}
    assert tun_dsts == {5: ["198.18.0.12"], 6: ["198.18.0.13"]}
    assert sorted(outputs(floods[5])) == [1, 2, TUNNEL]


def test_a_router_port_mac_is_dropped_not_flooded():
    flows = list(FloodApp().flows(view()))
    router = [f for f in flows if dict(f.match).get("eth_dst") == "fa:16:3e:00:00:06"]
    assert len(router) == 1 and router[0].actions == ()


def test_a_router_interface_mac_goes_to_the_snat_table():
    v = view()
    v.ports["b-router"]["device_owner"] = "network:router_interface"
    router = [f for f in FloodApp().flows(v) if dict(f.match).get("eth_dst") == "fa:16:3e:00:00:06"]
    assert [f.actions for f in router] == [(("goto", TABLE_SNAT_OUT),)]


def test_a_port_with_port_security_gets_arp_and_only_the_ipv4_its_rules_allow():
    v = view()
    v.ports["b-local-2"]["port_security_enabled"] = True   # ofport 2
    v.ports["b-local-2"]["security_groups"] = ["sg"]
    flows = list(FloodApp().flows(v))
    for flow in flows:
        match = dict(flow.match)
        if 2 in outputs(flow):  # ARP straight out; known unicast too (XDP forwards IPv4 itself)
            assert match.get("eth_type") == 0x0806 or match.get("eth_dst") == "fa:16:3e:00:00:02", flow
        if ("set_field", "reg6", 2) in flow.actions:  # IPv4 through its ingress rules
            assert match.get("eth_type") == 0x0800, flow
            assert flow.actions[-1] == ("resubmit", TABLE_SG_INGRESS) or \
                ("resubmit", TABLE_SG_INGRESS) in flow.actions, flow
    to_b2 = [f for f in flows if dict(f.match).get("eth_dst") == "fa:16:3e:00:00:02"]
    assert sorted(dict(f.match).get("eth_type", 0) for f in to_b2 if f.actions) == [0x0800, 0x0806]
    ip_floods = [f for f in flows if f.table == TABLE_FLOOD and dict(f.match).get("eth_type") == 0x0800
                 and dict(f.match).get("metadata") == 5]
    assert ip_floods and all(("set_field", "reg6", 2) in f.actions and 1 in outputs(f) for f in ip_floods)
    assert [f.actions for f in to_b2 if "eth_type" not in dict(f.match)] == [()]
    other = [f for f in flows if f.table == TABLE_FLOOD and dict(f.match).get("metadata") == 5
             and "eth_type" not in dict(f.match)]
    assert other and all(1 in outputs(f) and 2 not in outputs(f) for f in other)
