"""`dfxdp bench`: measure, write results.json, charts and summary.md."""
from __future__ import annotations

import pathlib

import click

NOT_MEASURED = [
    "end-to-end packets per second against kernel routing + iptables and OVS userspace (next: issue 6)",
    "control plane with etcd: NB write to datapath programmed p50/p99, resync time, agent RSS, API throughput",
]


def register(group: click.Group) -> None:
    @group.command("bench")
    @click.option("--quick", is_flag=True, help="Tiny sizes: every part in well under two minutes.")
    @click.option("--large", is_flag=True, help="The largest sizes as well.")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), default="bench-out", show_default=True)
    def bench(quick: bool, large: bool, out_dir: str) -> None:
        """Measure the datapath cost of every path against an empty XDP program, write the results."""
        from rich.progress import Progress

        from dfxdp.bench import datapath, report

        samples = 500 if quick else 20000
        with Progress(transient=True) as progress:
            task = progress.add_task("datapath", total=5 + len(datapath.SG_SIZES))

            def step(label: str) -> None:
                progress.update(task, advance=1, description=f"datapath: {label}")

            costs = datapath.measure(samples, step)
        floor = costs[0].ns_per_packet or 1
        results = {"machine": report.machine(), "samples": samples, "quick": quick, "large": large,
                   "datapath": [{"name": c.name, "ns_per_packet": c.ns_per_packet, "verdict": c.verdict,
                                 "ratio_to_floor": c.ns_per_packet / floor} for c in costs],
                   "not_measured": NOT_MEASURED}
        for path in report.write(pathlib.Path(out_dir), results):
            click.echo(f"wrote {path}")
