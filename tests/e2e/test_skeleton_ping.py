"""The skeleton attached to a veth in a namespace: ping passes through it and
the counters read from Python match the frames sent."""
import re

from dfxdp.testing.netns import ifindex, inside, run


def test_ping_through_the_skeleton_and_counters_match(pipeline, topo):
    vm, host = topo.netns("vm"), topo.netns("host")
    topo.veth("tap0", host, "eth0", vm, mac="fa:16:3e:00:00:01", peer_mac="fa:16:3e:00:00:02")
    topo.ip(vm, "addr add 198.18.10.2/24 dev eth0")
    topo.ip(host, "addr add 198.18.10.1/24 dev tap0")
    # Static neighbours: only the echo requests themselves cross the XDP hook.
    topo.ip(vm, "neigh replace 198.18.10.1 lladdr fa:16:3e:00:00:01 dev eth0 nud permanent")
    topo.ip(host, "neigh replace 198.18.10.2 lladdr fa:16:3e:00:00:02 dev tap0 nud permanent")
    idx = ifindex("tap0", host)
    with inside(host):
        pipeline.attach(idx, "port")
    try:
        out = run(["ping", "-c", "5", "-i", "0.2", "-W", "2", "198.18.10.1"], ns=vm).stdout
        assert re.search(r"5 packets transmitted, 5 received", out), out
        counters = pipeline.counters()
        assert counters["stages"]["STAGE_ENTRY_PORT"]["packets"] == 5
        assert counters["verdicts"]["XDP_PASS"]["packets"] == 5
        # 5 echo requests of 98 bytes each (64-byte ICMP + IP + Ethernet)
        assert counters["verdicts"]["XDP_PASS"]["bytes"] == 5 * 98
        assert all(v["packets"] == 0 for v in counters["drops"].values())
    finally:
        with inside(host):
            pipeline.detach(idx)
