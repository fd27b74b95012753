"""Writing a bench run: results.json, PNG charts, summary.md."""
from __future__ import annotations

import json
import os
import pathlib
import platform

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from . import api as api_part  # noqa: E402 - its summary
from . import dns as dns_part  # noqa: E402 - its summary and chart
from . import lb_compare  # noqa: E402

CONTROL_SERIES = (("write_to_programmed_p50", "NB write → programmed, p50"),
                  ("write_to_programmed_p99", "NB write → programmed, p99"),
                  ("first_packet_p50", "API call → first forwarded packet, p50"),
                  ("resync_seconds", "full resync of an empty agent"))


STEP_NAMES = {"create": "API create", "read_back": "read back", "plug": "plug", "agent": "agent: tap → XDP",
              "ping": "ping"}  # dfxdp/bench/control.py FirstPacket


def _read(path: str) -> str:
    try:
        return pathlib.Path(path).read_text().strip()
    except OSError:
        return ""


def machine() -> dict:
    """What the numbers depend on: CPU, kernel, the clock the kernel times with, and the
    CPU vulnerability mitigations in force (they tax every system call and context switch)."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    vulnerabilities = pathlib.Path("/sys/devices/system/cpu/vulnerabilities")
    mitigations = {p.name: _read(str(p)) for p in sorted(vulnerabilities.glob("*"))} if vulnerabilities.is_dir() else {}
    cmdline = next((arg for arg in _read("/proc/cmdline").split() if arg.startswith("mitigations=")), "")
    return {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cpu_model": cpu, "python": platform.python_version(),
            "clocksource": _read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
            "mitigations_cmdline": cmdline, "mitigations": mitigations}


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages now."""
    return [round(v, 2) for v in os.getloadavg()]


def throughput_rows(rows: list[dict]) -> list[dict]:
    """Each row with its ratio to kernel + iptables of the same protocol and security-group
    setting, per packet: the kernel's router ns over this router's."""
    kernel = {(r["protocol"], r["security_groups"]): r["ns_per_packet"] for r in rows if r["name"] == "kernel_iptables"}
    return [{**r, "kernel_ns_over_this": kernel.get((r["protocol"], r["security_groups"]), 0) / r["ns_per_packet"]
             if r["ns_per_packet"] > 0 else 0.0} for r in rows]


def write(out: pathlib.Path, results: dict) -> list[pathlib.Path]:
    """results.json, a chart per part that ran, summary.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    charts = {"datapath": _datapath_chart, "throughput": _throughput_chart, "control": _control_chart,
              "dns": dns_part.chart, "lb_compare": lb_compare.chart}
    written = [chart(out, results[name]) for name, chart in charts.items() if name in results]
    (out / "summary.md").write_text(_summary(results))
    return [out / "results.json", *written, out / "summary.md"]


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _datapath_chart(out: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [r["name"] for r in rows]
    values = [r["ns_per_packet"] for r in rows]
    ax.barh(names, values, color=["#999999" if r["name"].startswith("floor") else "#2a7ab0" for r in rows])
    for y, r in enumerate(rows):
        ax.text(r["ns_per_packet"], y, f" {r['ns_per_packet']:.0f} ns ({r['method']})", va="center", fontsize=7)
    ax.set_xlabel("ns per packet (BPF_PROG_TEST_RUN with repeat; floor_single_run: one run per sample)")
    ax.set_title("dfxdp datapath cost per path")
    ax.set_xlim(right=max(values) * 1.45)
    ax.invert_yaxis()
    return _save(fig, out / "datapath.png")


def _throughput_chart(out: pathlib.Path, rows: list[dict]) -> pathlib.Path:
    """Router ns per packet, one group of bars per protocol and security-group setting."""
    fig, ax = plt.subplots(figsize=(9, 4))
    settings = [(p, sg) for p in ("udp", "tcp") for sg in (True, False)]
    routers = list(dict.fromkeys(r["name"] for r in rows))
    width = 0.8 / len(routers)
    for i, router in enumerate(routers):
        values = [next((r["ns_per_packet"] for r in rows if r["name"] == router and
                        (r["protocol"], r["security_groups"]) == s), 0) for s in settings]
        xs = [x + i * width for x in range(len(settings))]
        bars = ax.bar(xs, values, width, label=router)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([x + width * (len(routers) - 1) / 2 for x in range(len(settings))],
                  [f"{p.upper()}, {'with' if sg else 'no'} security groups" for p, sg in settings], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("router ns per packet (log)")
    ax.set_title("End to end: 1/pps − 1/pps(generator → sink), one core, median of runs")
    ax.legend(fontsize=8)
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


def _machine_lines(results: dict) -> list[str]:
    m = results["machine"]
    vulnerable = sorted(name for name, state in m.get("mitigations", {}).items() if state.startswith("Vulnerable"))
    loads = ", ".join(f"{part} {values[0]:.1f}" for part, values in results.get("load", {}).items())
    return [f"Machine: {m.get('cpu_model', '?')}, {m['cpus']} CPUs, {m['machine']}, kernel {m['kernel']}, "
            f"clocksource {m.get('clocksource', '?')}, {m.get('mitigations_cmdline') or 'mitigations default'}"
            f"{'; vulnerable: ' + ', '.join(vulnerable) if vulnerable else ''}; Python {m['python']}.", "",
            f"Load average (1 min) as each part began: {loads}.", ""]


def _datapath_section(rows: list[dict]) -> list[str]:
    lines = ["## Datapath cost (ns per packet, BPF_PROG_TEST_RUN)", "",
             "| path | ns/packet | tail | samples | method | verdict |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['ns_per_packet']:.0f} | {r['tail']} {r['tail_ns']:.0f} | "
                     f"{r['samples']:,} | {r['method']} | {r['verdict']} |")
    sg = {int(r["name"].split("_")[1]): r["ns_per_packet"] for r in rows if r["name"].startswith("sg_")}
    if sg:
        first, last = sg[min(sg)], sg[max(sg)]
        lines += ["", f"Security groups, a new flow no rule allows: {first:.0f} ns at {min(sg):,} rules, "
                      f"{last:.0f} ns at {max(sg):,} (+{100 * (last / first - 1):.0f}%)."]
    return lines + ["", "![datapath](datapath.png)", ""]


def _throughput_section(rows: list[dict]) -> list[str]:
    lines = ["## End to end: live-frames generator → router → XDP sink, one core", "",
             "| router | protocol | security groups | Mpps per CPU second | Mpps (wall) | router ns/packet | "
             "kernel + iptables ns / this | generator → sink Mpps per CPU second |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['protocol']} | {'yes' if r['security_groups'] else 'no'} | "
                     f"{r['pps_per_cpu'] / 1e6:.2f} | {r['pps'] / 1e6:.2f} | {r['ns_per_packet']:.0f} | "
                     f"{r['kernel_ns_over_this']:.2f} | {r['generator_pps_per_cpu'] / 1e6:.2f} |")
    return lines + ["", f"Median of {len(rows[0]['runs'])} run(s) each; router ns per packet = 1/pps − "
                        "1/pps(generator → sink), both per CPU second, measured back to back.", "",
                    "![throughput](throughput.png)", ""]


def _control_section(points: list[dict]) -> list[str]:
    tail = "p99" if all(p.get("write_samples", 0) >= 100 for p in points) else "max"
    lines = ["## Control plane (real etcd, one real agent, simulated chassis)", "",
             "| ports | creates/s (API, bulk) | list all (s) | write → programmed p50 / " + tail + " (s) | "
             "first packet p50 / max (s) | full resync (s) | agent RSS (MiB) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {p['ports']:,} | {p['create_per_second']:.0f} | {p['list_seconds']:.2f} | "
                     f"{p['write_to_programmed_p50']:.3f} / {p['write_to_programmed_p99']:.3f} | "
                     f"{p['first_packet_p50']:.2f} / {p['first_packet_max']:.2f} | {p['resync_seconds']:.2f} | "
                     f"{p['agent_rss_mib']:.0f} |")
    lines += ["", "Write → programmed in two, p50 / " + tail + " (s): the API call itself (the create answered), "
                  "then from its answer until the entry is in the map (the watch, the agent's pass): " +
              ", ".join(f"{p['write_api_p50']:.3f} / {p['write_api_p99']:.3f} and {p['write_after_api_p50']:.3f} / "
                        f"{p['write_after_api_p99']:.3f} at {p['ports']:,} ports"
                        for p in points if "write_api_p50" in p)
              + "."]
    lines += ["", "First packet, step by step (median seconds; the agent's step runs beside the plug, from the "
                  "tap's appearance to XDP attached on it; the ping's from both done to the answer):", "",
              "| ports | " + " | ".join(STEP_NAMES.values()) + " |", "|---:|" + "---:|" * len(STEP_NAMES)]
    lines += [f"| {p['ports']:,} | " + " | ".join(f"{p['first_packet_steps'][step]:.3f}" for step in STEP_NAMES) + " |"
              for p in points if p.get("first_packet_steps")]
    return lines + ["", "![control](control.png)", ""]


def _lb_section(rows: list[dict]) -> list[str]:
    """The load balancer's per-packet costs beside bridging and the floor, and its ring rebuild."""
    lines = ["## Load balancer", "", "| measure | value | unit |", "|---|---:|---|"]
    lines += [f"| {r['name']} | {r['value']:.1f} | {r['unit']} |" for r in rows]
    return lines + ["", "ns per packet through the whole pipeline (BPF_PROG_TEST_RUN, one run per sample, "
                        "median; the floor timed the same way): a new flow picks its member from the ring and "
                        "writes both LRU entries; an established one finds its member in one lookup. The ring: "
                        "Maglev in Python, then a new inner array filled and swapped in.", ""]


def _summary(results: dict) -> str:
    lines = ["# dfxdp bench", "", *_machine_lines(results)]
    if "datapath" in results:
        lines += _datapath_section(results["datapath"])
    if "throughput" in results:
        lines += [*_throughput_section(results["throughput"]), *_tcp_section(results["tcp"])]
    if results.get("lb"):
        lines += [*_lb_section(results["lb"]), *lb_compare.section(results["lb_compare"])]
    if "dns" in results:
        lines += dns_part.summary(results["dns"])
    if "punt" in results:
        lines += [*_punt_summary(results["punt"]), "", *_dhcp_summary(results["dhcp"])]
    if "bum" in results:
        lines += [*_bum_summary(results["bum"]), *_snat_summary(results["snat"])]
    if "control" in results:
        lines += _control_section(results["control"])
    if "control_router" in results:
        r = results["control_router"]
        lines += [f"A router with {r['subnets']} subnets, a new chassis with a port on one of them: every subnet "
                  f"routable {r['routable_seconds']:.2f} s after its agent started.", ""]
    if "api" in results:
        lines += api_part.summary(results["api"])
    return "\n".join(lines)


def _bum_summary(rows: list[dict]) -> list[str]:
    return ["## BUM replication in the OVS fallback (ovs-vswitchd CPU, userspace datapath)", "",
            "| local taps | other chassis | broadcasts | copies | CPU µs per broadcast | CPU µs per copy |",
            "|---:|---:|---:|---:|---:|---:|",
            *(f"| {r['local_taps']} | {r['remote_chassis']} | {r['broadcasts']:,} | {r['copies']:,} | "
              f"{r['cpu_us_per_broadcast']:.1f} | {r['cpu_us_per_copy']:.2f} |" for r in rows), "",
            "One broadcast into br-int, the flood app's action list: an output per local tap, then "
            "tunnel destination, VNI and vxlan0 per other chassis (head-end replication).", ""]


def _snat_summary(rows: list[dict]) -> list[str]:
    return ["## Default SNAT in the OVS fallback (ct(commit, nat) in br-int, ovs-vswitchd CPU)", "",
            "| frames | translated | CPU µs per frame | per CPU second | sessions tracked |", "|---|---:|---:|---:|---:|",
            *(f"| {r['kind']} | {r['frames']:,} | {r['cpu_us_per_frame']:.1f} | {r['per_cpu_second']:,.0f} | "
              f"{r['tracked_sessions']:,} |" for r in rows), "",
            "new: every frame another UDP source port (a session each); established: one flow.", ""]


def _dhcp_summary(d: dict) -> list[str]:
    return ["## DHCP (a VM's DISCOVER through the punt path to the DHCP app, its OFFER back)", "",
            f"DISCOVER → OFFER, VM to VM: p50 {d['offer_us_p50']:.0f} µs, p99 {d['offer_us_p99']:.0f} µs "
            f"({d['discovers']:,} requests, {d['lost']} lost).", "",
            f"Flood of {d['flood_sent']:,} DISCOVERs, punt limit lifted: {d['flood_answered']:,} answered, "
            f"{d['answers_per_second']:,.0f} OFFERs per second.", ""]


def _punt_summary(p: dict) -> list[str]:
    return ["## Punt path (a VM's frame up to an app in the agent, its reply back)", "",
            f"Round trip, VM to VM: p50 {p['round_trip_us_p50']:.0f} µs, p99 {p['round_trip_us_p99']:.0f} µs "
            f"({p['round_trips']:,} requests, {p['lost']} lost).", "",
            f"Flood of {p['flood_sent']:,} frames, limit lifted: {p['flood_delivered']:,} reached the app "
            f"({p['delivered_pps']:,.0f} per second), {p['flood_queue_full']:,} dropped on a full ring, "
            f"{p['flood_unseen']:,} by the veth before XDP.", "",
            f"The same flood under the default limit ({p['limit_packets_per_second']} per second per port): "
            f"{p['limited_admitted']:,} admitted, {p['limited_dropped']:,} dropped in the datapath (DROP_PUNT_RATE)."]
