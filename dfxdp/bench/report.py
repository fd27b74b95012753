"""Writing a bench run: results.json, PNG charts, summary.md."""
from __future__ import annotations

import json
import os
import pathlib
import platform

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

CONTROL_SERIES = (("write_to_programmed_p50", "NB write → programmed, p50"),
                  ("write_to_programmed_p99", "NB write → programmed, p99"),
                  ("first_packet_p50", "API call → first forwarded packet, p50"),
                  ("resync_seconds", "full resync of an empty agent"))


def machine() -> dict:
    return {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}


def write(out: pathlib.Path, results: dict) -> list[pathlib.Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    charts = [_datapath_chart(out, results["datapath"]), _throughput_chart(out, results["throughput"]),
              _control_chart(out, results["control"])]
    (out / "summary.md").write_text(_summary(results))
    return [out / "results.json", *charts, out / "summary.md"]


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    return _save(fig, out / "datapath.png")


def _throughput_chart(out: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [r["name"] for r in rows]
    ax.barh(names, [r["delivered_pps"] / 1e3 for r in rows], color="#2a7ab0", label="delivered to the server NIC")
    ax.barh(names, [r["pps"] / 1e3 for r in rows], color="#f0a030", height=0.4, label="read by the application")
    for y, r in enumerate(rows):
        ax.text(r["delivered_pps"] / 1e3, y, f" {r['delivered_pps'] / 1e3:.0f}k ({r['ratio_to_kernel']:.2f}×)",
                va="center", fontsize=8)
    ax.set_xlabel(f"thousand packets per second (UDP, {rows[0]['packet_bytes']}-byte payload, "
                  f"{rows[0]['streams']} iperf3 streams)")
    ax.set_title("End to end through a stateful router")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, out / "throughput.png")


def _control_chart(out: pathlib.Path, points: list[dict]) -> pathlib.Path:
    fig, (latency, memory) = plt.subplots(1, 2, figsize=(10, 4))
    ports = [p["ports"] for p in points]
    for key, label in CONTROL_SERIES:
        latency.plot(ports, [p[key] for p in points], marker="o", label=label)
    latency.set_xscale("log")
    latency.set_yscale("log")
    latency.set_xlabel("ports in NB (etcd)")
    latency.set_ylabel("seconds")
    latency.set_title("Control plane")
    latency.legend(fontsize=7)
    memory.plot(ports, [p["agent_rss_mib"] for p in points], marker="o", color="#2a7ab0")
    memory.set_xscale("log")
    memory.set_ylim(bottom=0)
    memory.set_xlabel("ports in NB (etcd)")
    memory.set_ylabel("agent RSS, MiB")
    memory.set_title("Agent memory after a full resync")
    return _save(fig, out / "control.png")


def _tcp_section(rows: list[dict]) -> list[str]:
    """TCP through dfxdp with security groups on both ends, as a ratio to the same path unfiltered."""
    lines = ["## End to end: TCP through security groups", "",
             "| dfxdp ports | Gbit/s | × unfiltered | retransmits |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['gbits_per_second']:.2f} | {r['ratio_to_unfiltered']:.2f} | "
                     f"{r['retransmits']:,} |")
    return lines + ["", f"One iperf3 TCP client, {rows[0]['streams']} streams, routed; port security off on both "
                        "ports, then both ports in a default-like group (ingress from members, egress anywhere). "
                        "Conntrack that loses established flows shows here as a ratio far below 1.", ""]


def _lb_section(rows: list[dict]) -> list[str]:
    """The load balancer's per-packet costs beside bridging and the floor, and its ring rebuild."""
    lines = ["## Load balancer", "", "| measure | value | unit |", "|---|---:|---|"]
    lines += [f"| {r['name']} | {r['value']:.1f} | {r['unit']} |" for r in rows]
    return lines + ["", "ns per packet through the whole pipeline (BPF_PROG_TEST_RUN, median): a new flow picks "
                        "its member from the ring and writes both LRU entries; an established one finds its "
                        "member in one lookup. The ring: Maglev in Python, then a new inner array filled and "
                        "swapped in.", ""]


def _summary(results: dict) -> str:
    m = results["machine"]
    lines = ["# dfxdp bench", "",
             f"Machine: {m['machine']}, {m['cpus']} CPUs, kernel {m['kernel']}, Python {m['python']}", "",
             "## Datapath cost (ns per packet, BPF_PROG_TEST_RUN)", "",
             "| path | ns/packet | × floor | verdict |", "|---|---:|---:|---|"]
    for r in results["datapath"]:
        lines.append(f"| {r['name']} | {r['ns_per_packet']:.0f} | {r['ratio_to_floor']:.2f} | {r['verdict']} |")
    sg = {int(r["name"].split("_")[1]): r["ns_per_packet"] for r in results["datapath"] if r["name"].startswith("sg_")}
    if sg:
        first, last = sg[min(sg)], sg[max(sg)]
        lines += ["", f"Security groups, a new flow no rule allows (the whole policy lookup): {first:.0f} ns at "
                      f"{min(sg):,} rules, {last:.0f} ns at {max(sg):,} — ×{last / first:.2f} for "
                      f"{max(sg) // min(sg):,}× the rules: the cost follows the depth of the LPM tries, not the "
                      f"number of rules."]
    lines += ["", "![datapath](datapath.png)", "",
              "## End to end: packets per second through a stateful router", "",
              "| router | delivered pps | × kernel + iptables | read by iperf3 | sent | loss % |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in results["throughput"]:
        lines.append(f"| {r['name']} | {r['delivered_pps']:,.0f} | {r['ratio_to_kernel']:.2f} | {r['pps']:,.0f} | "
                     f"{r['sent_pps']:,.0f} | {r['loss_percent']:.1f} |")
    lines += ["", "Delivered: frames the router put on the server's interface per second. The iperf3 "
                  "receivers may read fewer (their sockets overflow first on a small machine).", "",
              "![throughput](throughput.png)", "",
              *_tcp_section(results["tcp"]),
              *_punt_summary(results["punt"]), "",
              *(_lb_section(results["lb"]) if results.get("lb") else []),
              "## Control plane (real etcd, one real agent, simulated chassis)", "",
              "| ports | creates/s (API) | list all (s) | write → programmed p50 / p99 (s) | "
              "first packet p50 / max (s) | full resync (s) | agent RSS (MiB) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in results["control"]:
        lines.append(f"| {p['ports']:,} | {p['create_per_second']:.0f} | {p['list_seconds']:.2f} | "
                     f"{p['write_to_programmed_p50']:.3f} / {p['write_to_programmed_p99']:.3f} | "
                     f"{p['first_packet_p50']:.2f} / {p['first_packet_max']:.2f} | {p['resync_seconds']:.2f} | "
                     f"{p['agent_rss_mib']:.0f} |")
    lines += ["", "![control](control.png)", ""]
    return "\n".join(lines)


def _punt_summary(p: dict) -> list[str]:
    return ["## Punt path (a VM's frame up to an app in the agent, its reply back)", "",
            f"Round trip, VM to VM: p50 {p['round_trip_us_p50']:.0f} µs, p99 {p['round_trip_us_p99']:.0f} µs "
            f"({p['round_trips']:,} requests, {p['lost']} lost).", "",
            f"Flood of {p['flood_sent']:,} frames, limit lifted: {p['flood_delivered']:,} reached the app "
            f"({p['delivered_pps']:,.0f} per second), {p['flood_queue_full']:,} dropped on a full ring, "
            f"{p['flood_unseen']:,} by the veth before XDP.", "",
            f"The same flood under the default limit ({p['limit_packets_per_second']} per second per port): "
            f"{p['limited_admitted']:,} admitted, {p['limited_dropped']:,} dropped in the datapath (DROP_PUNT_RATE)."]
