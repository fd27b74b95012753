"""`dfxdp bench`: measure, write results.json, charts and summary.md."""
from __future__ import annotations

import pathlib
from dataclasses import asdict, dataclass

import click


@dataclass(frozen=True)
class Sizes:
    """How much of each part a run does."""

    datapath_samples: int
    throughput_seconds: float
    control_ports: tuple[int, ...]
    control_samples: int          # NB write → programmed, per size
    first_packet_samples: int     # API call → first forwarded packet, per size
    punt_round_trips: int
    punt_flood: int               # frames per punt flood


QUICK = Sizes(500, 1, (10, 50), 5, 2, 50, 2000)
FULL = Sizes(20000, 10, (10, 1000, 10000), 50, 5, 2000, 20000)
LARGE_PORTS = 100000


def register(group: click.Group) -> None:
    @group.command("bench")
    @click.option("--quick", is_flag=True, help="Tiny sizes: every part in about two minutes.")
    @click.option("--large", is_flag=True, help=f"Also the control plane at {LARGE_PORTS:,} ports (long).")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), default="bench-out", show_default=True)
    def bench(quick: bool, large: bool, out_dir: str) -> None:
        """Measure datapath cost, end-to-end packets per second against kernel routing + iptables
        and OVS, TCP through security groups against unfiltered, the punt path, and the control plane
        on a real etcd; write results.json, charts and summary.md."""
        from rich.progress import Progress

        from dfxdp.bench import control, datapath, lb, punt, report, throughput

        from .interrupt import clean_exit_on_signals

        clean_exit_on_signals()

        sizes = QUICK if quick else FULL
        ports = sizes.control_ports + ((LARGE_PORTS,) if large else ())
        with Progress() as progress:
            def part(name: str, total: int):
                task = progress.add_task(name, total=total)

                def step(label: str) -> None:
                    progress.update(task, advance=1, description=f"{name}: {label}")
                return task, step

            dp_task, dp_step = part("datapath", 5 + len(datapath.SG_SIZES))
            costs = datapath.measure(sizes.datapath_samples, dp_step)
            progress.update(dp_task, description="datapath: done")
            lb_task, lb_step = part("load balancer", 5)
            lb_costs = lb.measure(sizes.datapath_samples, lb_step)
            progress.update(lb_task, description="load balancer: done")
            tp_task, tp_step = part("end to end", len(throughput.ROUTERS) + len(throughput.TCP_RUNS))
            rates = throughput.measure(sizes.throughput_seconds, tp_step)
            tcp = throughput.measure_tcp(sizes.throughput_seconds, tp_step)
            progress.update(tp_task, description="end to end: done")
            pt_task, pt_step = part("punt", 3)
            punted = punt.measure(sizes.punt_round_trips, sizes.punt_flood, pt_step)
            progress.update(pt_task, description="punt: done")
            cp_task = progress.add_task("control plane", total=None)
            points = control.measure(list(ports), sizes.control_samples, sizes.first_packet_samples,
                                     lambda label: progress.update(cp_task, description=label))
            progress.update(cp_task, total=1, completed=1, description="control plane: done")
        floor = costs[0].ns_per_packet or 1
        kernel = next(r.delivered_pps for r in rates if r.name == "kernel_iptables") or 1
        unfiltered = next(r.gbits_per_second for r in tcp if r.name == "dfxdp_unfiltered") or 1
        results = {"machine": report.machine(), "quick": quick, "large": large, "sizes": asdict(sizes),
                   "datapath": [{"name": c.name, "ns_per_packet": c.ns_per_packet, "verdict": c.verdict,
                                 "ratio_to_floor": c.ns_per_packet / floor} for c in costs],
                   "throughput": [{**asdict(r), "ratio_to_kernel": r.delivered_pps / kernel} for r in rates],
                   "tcp": [{**asdict(r), "ratio_to_unfiltered": r.gbits_per_second / unfiltered} for r in tcp],
                   "lb": [asdict(c) for c in lb_costs],
                   "punt": asdict(punted), "control": control.as_dicts(points)}
        for path in report.write(pathlib.Path(out_dir), results):
            click.echo(f"wrote {path}")
