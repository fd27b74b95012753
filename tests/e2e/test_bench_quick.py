"""`dfxdp bench --quick` as a smoke test: it writes every file, every path it
claims to measure took its intended verdict, every router carried traffic and
every control-plane size was measured. Never asserts on timings."""
import json
import subprocess
import sys

from dfxdp.testing.netns import pid_tag


def test_bench_quick_writes_results_charts_and_summary(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "bench", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["parts"] == ["datapath", "lb", "dns", "throughput", "punt", "fallback", "control", "api"]
    assert set(results["load"]) == set(results["parts"])
    assert results["machine"]["clocksource"] and results["machine"]["cpu_model"]
    verdicts = {r["name"]: r["verdict"] for r in results["datapath"]}
    established = ("l2_local", "l2_remote", "l3_routed", "fip_dnat", "l3_routed_sg")  # each fast, then by the stages
    assert verdicts == {"floor": "XDP_PASS", "floor_single_run": "XDP_PASS", "floor_replayed": "XDP_PASS",
                        **{f"{path}{way}": "XDP_REDIRECT" for path in established for way in ("", "_stages")},
                        "sg_10_rules": "XDP_DROP", "sg_1000_rules": "XDP_DROP", "sg_10000_rules": "XDP_DROP"}
    methods = {r["name"]: r["method"] for r in results["datapath"]}
    # a drop and an L2 redirect leave the frame as it was; routing, encapsulation and NAT rewrite it
    assert methods["sg_10_rules"] == methods["l2_local"] == methods["l2_local_stages"] == "repeat"
    assert methods["l3_routed"] == methods["l2_remote"] == methods["fip_dnat"] == methods["l3_routed_sg_stages"] == \
        "replay − replay cost"
    assert all(r["samples"] > 0 and r["tail"] in ("p99", "max") for r in results["datapath"])
    assert {(r["name"], r["protocol"], r["security_groups"]) for r in results["throughput"]} == {
        (name, protocol, sg) for name in ("dfxdp_xdp", "dfxdp_xdp_stages", "kernel_iptables", "ovs_userspace")
        for protocol in ("udp", "tcp") for sg in (True, False)}
    assert all(r["pps"] > 0 and r["runs"][0]["frames"] > 0 for r in results["throughput"])
    assert [r["name"] for r in results["tcp"]] == ["dfxdp_unfiltered", "dfxdp_security_groups"]
    assert all(r["gbits_per_second"] > 0 and r["ratio_to_unfiltered"] > 0 for r in results["tcp"])
    punt = results["punt"]
    assert punt["round_trips"] + punt["lost"] == 50 and punt["round_trips"] > 0
    assert punt["flood_delivered"] > 0 and punt["limited_dropped"] > 0
    assert 0 < punt["limited_admitted"] < punt["limited_sent"]
    assert [r["name"] for r in results["lb"]] == ["floor", "l2_local", "lb_new_flow", "lb_established_flow",
                                                  "maglev_build_1000_members", "ring_swap_65537_slots"]
    assert all(r["value"] > 0 for r in results["lb"])
    assert [r["name"] for r in results["lb_compare"]] == ["dfxdp_xdp", "iptables_statistic", "haproxy"]
    assert all(r["requests"] > 0 and r["requests_per_second"] > 0 and r["request_packets_per_second"] > 0
               for r in results["lb_compare"])
    assert [r["name"] for r in results["lb_compare"] if r["udp_pps_per_cpu"]] == ["dfxdp_xdp", "iptables_statistic"]
    dhcp = results["dhcp"]
    assert dhcp["discovers"] + dhcp["lost"] == 50 and dhcp["discovers"] > 0 and dhcp["offer_us_p50"] > 0
    assert dhcp["flood_answered"] > 0 and dhcp["answers_per_second"] > 0
    dns = results["dns"]
    assert min(dns["xdp_a_ns"], dns["xdp_ptr_ns"], dns["xdp_nxdomain_ns"], dns["floor_ns"]) > 0
    assert [r["name"] for r in dns["runs"]] == ["xdp", "dnsperf_ceiling", "dnsmasq", "unbound"]
    assert all(r["queries"] > 0 and r["qps"] > 0 for r in dns["runs"])
    assert dns["ratio_dnsmasq"] > 0 and dns["ratio_unbound"] > 0
    for row in results["bum"]:  # copies arrived, locally and through the tunnel (a rare one lost on the way in)
        wanted = row["broadcasts"] * (row["local_taps"] + row["remote_chassis"])
        assert 0.9 * wanted <= row["copies"] <= wanted
    snat = {r["kind"]: r for r in results["snat"]}
    assert snat["new"]["frames"] > 0 and snat["new"]["tracked_sessions"] >= snat["new"]["frames"] * 0.9
    assert snat["established"]["frames"] > 0 and snat["established"]["tracked_sessions"] > 0
    control = results["control"]
    assert [p["ports"] for p in control] == [12, 52]  # each size plus the peer VM's port and the DHCP port
    for point in control:
        assert 0 < point["write_to_programmed_p50"] <= point["write_to_programmed_p99"]
        assert 0 < point["write_api_p50"] <= point["write_api_p99"] <= point["write_to_programmed_p99"]
        assert 0 <= point["write_after_api_p50"] <= point["write_after_api_p99"] <= point["write_to_programmed_p99"]
        assert point["first_packet_p50"] > 0 and point["resync_seconds"] > 0 and point["agent_rss_mib"] > 10
        steps = point["first_packet_steps"]  # each step timed apart, none of them the whole
        assert set(steps) == {"create", "read_back", "plug", "agent", "ping"}
        assert all(0 < value < point["first_packet_max"] for value in steps.values())
        assert point["create_per_second"] > 0 and point["list_seconds"] > 0
    for chart in ("datapath.png", "throughput.png", "control.png", "dns.png", "lb_compare.png"):
        assert (tmp_path / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "summary.md").read_text()
    assert "| l3_routed |" in summary and "| kernel_iptables | udp | yes |" in summary and "| 52 |" in summary
    assert "write → programmed p50 / max" in summary  # 5 samples have no p99
    assert "| dfxdp_security_groups |" in summary and "| lb_established_flow |" in summary
    assert "| haproxy |" in summary and "| iptables_statistic |" in summary
    assert "## Punt path" in summary and "## DHCP" in summary and "## DNS" in summary
    assert "## BUM replication" in summary and "## Default SNAT" in summary
    # the API part at the control part's sizes: the DHCP ports of the bulk and single creates' networks, the
    # first size's 20 singles and one write before each of its four timed answers after a write
    assert [p["ports"] for p in results["api"]] == [10 + 1, 50 + 1 + (20 + 4) + 1]
    assert all(p["bulk_create_per_second"] > 0 and p["single_create_per_second"] > 0 for p in results["api"])
    assert "## API" in summary


def test_bench_chosen_parts_and_sizes_only(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "bench", "--quick", "--parts", "control,datapath",
                           "--ports", "20", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["parts"] == ["datapath", "control"] and "throughput" not in results
    assert [p["ports"] for p in results["control"]] == [22]  # the size plus the peer VM's port and the DHCP port
    assert sorted(p.name for p in tmp_path.iterdir()) == ["control.png", "datapath.png", "results.json", "summary.md"]


def bench_namespaces(pid: int) -> set[str]:
    """The namespaces bench process `pid` made (other benches may run on the machine)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = (line.split()[0] for line in out.splitlines())
    return {n for n in names if n.startswith(("thru-", "bpunt-", "bdhcp-", "bcp-", "bdns-")) and n.rsplit("-", 1)[-1].startswith(pid_tag(pid))}


def test_sigterm_mid_run_removes_what_the_bench_built(tmp_path):
    import time

    proc = subprocess.Popen([sys.executable, "-m", "dfxdp.cli.main", "bench", "--quick", "--out", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not bench_namespaces(proc.pid):  # wait until it is inside a topology
            assert proc.poll() is None and time.monotonic() < deadline, "the bench never built a namespace"
            time.sleep(0.05)
        proc.terminate()
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert bench_namespaces(proc.pid) == set()
    assert not (tmp_path / "results.json").exists()
