"""`dfxdp demo`: the pipeline on a namespace topology, with real traffic and its counters."""
from __future__ import annotations

import re
import subprocess
import uuid

import click


def _counter_table(counters: dict):
    from rich.table import Table

    table = Table(title="XDP pipeline counters")
    table.add_column("counter")
    table.add_column("packets", justify="right")
    table.add_column("bytes", justify="right")
    for group, rows in counters.items():
        for name, value in rows.items():
            if value.get("packets"):
                table.add_row(f"{group}/{name}", str(value["packets"]), str(value["bytes"]))
    return table


def run_skeleton_demo(console) -> None:
    """Two namespaces joined by a veth; the pipeline on the host end; ping through it."""
    from dfxdp.datapath import libbpf
    from dfxdp.datapath.pipeline import Pipeline
    from dfxdp.testing.netns import Topology, ifindex, inside, run

    bpffs = f"/run/dfxdp/demo-{uuid.uuid4().hex[:8]}"
    libbpf.ensure_bpffs(bpffs)
    pipe = None
    try:
        with Topology("demo") as topo:
            vm, host = topo.netns("vm"), topo.netns("host")
            topo.veth("tap0", host, "eth0", vm)
            topo.ip(vm, "addr add 198.18.10.2/24 dev eth0")
            topo.ip(host, "addr add 198.18.10.1/24 dev tap0")
            console.print(f"[bold]topology[/]: {vm} (198.18.10.2) ⇄ tap0@{host} (198.18.10.1)")
            pipe = Pipeline(f"{bpffs}/demo").load()
            with inside(host):
                pipe.attach(ifindex("tap0", host), "port")
            console.print(f"[bold]pipeline[/]: {len(pipe.programs)} programs, {len(pipe.maps)} maps "
                          f"pinned under {bpffs}/demo; xdp_port attached to tap0")
            out = run(["ping", "-c", "5", "-i", "0.2", "198.18.10.1"], ns=vm, check=False).stdout
            summary = re.search(r"\d+ packets transmitted.*", out)
            console.print(f"[bold]ping[/]: {summary.group(0) if summary else out.strip()}")
            console.print(_counter_table(pipe.counters()))
    finally:
        if pipe is not None:
            pipe.destroy()
        subprocess.run(["umount", "-l", bpffs], check=False)
        subprocess.run(["rmdir", bpffs], check=False)


def register(group: click.Group) -> None:
    @group.command("demo")
    def demo() -> None:
        """Build a namespace topology, run traffic through the XDP pipeline, print its counters."""
        from rich.console import Console

        try:
            run_skeleton_demo(Console())
        except (RuntimeError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
