"""Health monitors' decisions, without probing: which members this chassis probes and
from where, when a member's status changes, which HTTP codes count as healthy."""
from dfxdp.controller.apps.base import LocalView
from dfxdp.controller.health import MemberHealth, codes_match, local_members, probe_sources


def view(**over) -> LocalView:
    def port(pid, ip, host="", owner="", device=""):
        return {"id": pid, "network_id": "n", "mac_address": "fa:16:3e:00:00:01", "binding:host_id": host,
                "device_owner": owner, "device_id": device, "fixed_ips": [{"subnet_id": "s", "ip_address": ip}]}

    ports = [port("here", "10.0.0.5", "ch1"), port("there", "10.0.0.6", "ch2"),
             port("hm", "10.0.0.2", owner="network:lb-hm", device="s")]
    members = {f"m{i}": {"id": f"m{i}", "pool_id": "p", "address": ip, "protocol_port": 80, "subnet_id": "s"}
               for i, ip in enumerate(("10.0.0.5", "10.0.0.6"))}
    args = dict(chassis="ch1", tunnel_ip="198.18.0.1", networks={"n": {"id": "n", "key": 42, "mtu": 1450}},
                subnets={"s": {"id": "s", "network_id": "n", "cidr": "10.0.0.0/24"}},
                ports={p["id"]: p for p in ports}, local_ports={"here": 7},
                loadbalancers={"lb": {"id": "lb", "vip_subnet_id": "s"}},
                pools={"p": {"id": "p", "loadbalancer_id": "lb"}}, members=members,
                healthmonitors={"hm": {"id": "hm", "pool_id": "p", "type": "TCP"}})
    return LocalView(**{**args, **over})


def test_only_members_hosted_here_are_probed_from_their_subnets_source():
    v = view()
    assert [m["id"] for m, _, _ in local_members(v)] == ["m0"]
    (src,) = probe_sources(v).values()
    assert src.port["id"] == "hm" and src.prefixlen == 24 and src.device == "lbhm2a"


def test_no_monitor_no_probe():
    v = view(healthmonitors={})
    assert local_members(v) == [] and probe_sources(v) == {}


def test_a_member_goes_error_after_max_retries_down_and_back_after_max_retries():
    h = MemberHealth(reported="ONLINE")
    assert h.observe(False, 2, 3) is None and h.observe(False, 2, 3) is None
    assert h.observe(False, 2, 3) == "ERROR"
    h.reported = "ERROR"
    assert h.observe(False, 2, 3) is None  # already reported
    assert h.observe(True, 2, 3) is None and h.observe(False, 2, 3) is None  # a failure resets the good run
    assert h.observe(True, 2, 3) is None and h.observe(True, 2, 3) == "ONLINE"


def test_expected_codes_single_list_and_range():
    assert codes_match(200, "200") and not codes_match(201, "200")
    assert codes_match(202, "200,202") and codes_match(204, "200-204") and not codes_match(301, "200-204,302")
