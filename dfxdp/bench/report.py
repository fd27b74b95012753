"""Writing a bench run: results.json, PNG charts, summary.md."""
from __future__ import annotations

import json
import os
import pathlib
import platform

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend


def machine() -> dict:
    return {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def write(out: pathlib.Path, results: dict) -> list[pathlib.Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    files = [out / "results.json", _datapath_chart(out, results["datapath"]), out / "summary.md"]
    (out / "summary.md").write_text(_summary(results))
    return files


def _datapath_chart(out: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [r["name"] for r in rows]
    values = [r["ns_per_packet"] for r in rows]
    ax.barh(names, values, color=["#999999"] + ["#2a7ab0"] * (len(rows) - 1))
    for y, (v, r) in enumerate(zip(values, rows)):
        ax.text(v, y, f" {v:.0f} ns ({r['ratio_to_floor']:.1f}×)", va="center", fontsize=8)
    ax.set_xlabel("ns per packet (BPF_PROG_TEST_RUN)")
    ax.set_title("dfxdp datapath cost per path")
    ax.invert_yaxis()
    fig.tight_layout()
    path = out / "datapath.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _summary(results: dict) -> str:
    lines = ["# dfxdp bench", "", f"Machine: {results['machine']}", "",
             "## Datapath cost (ns per packet, BPF_PROG_TEST_RUN)", "",
             "| path | ns/packet | × floor | verdict |", "|---|---:|---:|---|"]
    for r in results["datapath"]:
        lines.append(f"| {r['name']} | {r['ns_per_packet']:.0f} | {r['ratio_to_floor']:.2f} | {r['verdict']} |")
    sg = {r["name"]: r["ns_per_packet"] for r in results["datapath"] if r["name"].startswith("sg_")}
    if sg:
        first, last = sg[min(sg, key=lambda k: int(k.split("_")[1]))], sg[max(sg, key=lambda k: int(k.split("_")[1]))]
        lines += ["", f"Security groups, a new flow no rule allows (the whole policy lookup): {first:.0f} ns at 10 "
                      f"rules, {last:.0f} ns at 10,000 — ×{last / first:.2f} for 1000× the rules: the cost follows "
                      f"the depth of the LPM tries, not the number of rules.", ""]
    lines += ["![datapath](datapath.png)", "", "## Not measured yet", "",
              *[f"- {item}" for item in results.get("not_measured", [])], ""]
    return "\n".join(lines)
