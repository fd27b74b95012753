"""`dfxdp bench --quick` as a smoke test: it writes every file and every path it
claims to measure took its intended verdict. Never asserts on timings."""
import json
import subprocess
import sys


def test_bench_quick_writes_results_charts_and_summary(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "bench", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    verdicts = {r["name"]: r["verdict"] for r in results["datapath"]}
    assert verdicts == {"floor": "XDP_PASS", "l2_local": "XDP_REDIRECT", "l2_remote": "XDP_REDIRECT",
                        "l3_routed": "XDP_REDIRECT", "fip_dnat": "XDP_REDIRECT", "sg_10_rules": "XDP_DROP",
                        "sg_1000_rules": "XDP_DROP", "sg_10000_rules": "XDP_DROP"}
    assert all(r["ns_per_packet"] > 0 and r["ratio_to_floor"] > 0 for r in results["datapath"])
    assert (tmp_path / "datapath.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (tmp_path / "summary.md").read_text()
    assert "| l3_routed |" in summary and "Not measured yet" in summary
