"""`dfxdp bench`: measure, write results.json, charts and summary.md."""
from __future__ import annotations

import pathlib
from dataclasses import asdict, dataclass
from typing import Callable

import click


@dataclass(frozen=True)
class Sizes:
    """How much of each part a run does."""

    datapath_samples: int         # one-run samples per path (paths timed with repeat take fewer)
    throughput_seconds: float     # per generator run
    throughput_runs: int          # runs per router, protocol and security-group setting
    control_ports: tuple[int, ...]
    control_samples: int          # NB write → programmed, per size (p99 needs 100)
    first_packet_samples: int     # API call → first forwarded packet, per size
    punt_round_trips: int
    punt_flood: int               # frames per punt flood (and per DHCP flood)
    dns_seconds: float            # each dnsperf run (XDP, its ceiling, dnsmasq, unbound)
    fallback_frames: int          # broadcasts per replication fan-out, and SNAT frames (new, established)
    router_subnets: int           # the control part's router on a new chassis
    api_singles: int              # the API part's single creates per size (CLIENTS clients)


QUICK = Sizes(500, 0.2, 1, (10, 50), 5, 2, 50, 2000, 1, 1000, 5, 20)
FULL = Sizes(20000, 2, 3, (10, 1000, 10000), 100, 5, 2000, 20000, 10, 20000, 200, 1000)
LARGE_PORTS = 100000
PARTS = ("datapath", "lb", "dns", "throughput", "punt", "fallback", "control", "api")
SIZED_PARTS = ("control", "api")  # the parts --ports and --large size
MAX_PORTS = 1_000_000


def parse_parts(text: str) -> tuple[str, ...]:
    """'datapath,control' -> the parts in PARTS order; an unknown or empty name is a one-line error."""
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in PARTS:
            raise click.ClickException(f"--parts: unknown part {name!r}; choose from {', '.join(PARTS)}")
    return tuple(part for part in PARTS if part in names)


def parse_ports(text: str) -> tuple[int, ...]:
    """'10000,100000' -> sizes in increasing order (the bench grows one NB through them)."""
    sizes = set()
    for item in text.split(","):
        item = item.strip().replace("_", "")
        if not item.isdigit():
            raise click.ClickException(f"--ports: {item!r} is not a whole number of ports")
        if not 1 <= int(item) <= MAX_PORTS:
            raise click.ClickException(f"--ports: {int(item):,} ports is outside 1..{MAX_PORTS:,}")
        sizes.add(int(item))
    return tuple(sorted(sizes))


def _callback(parse: Callable[[str], tuple]):
    return lambda _ctx, _param, value: None if value is None else parse(value)


def register(group: click.Group) -> None:
    @group.command("bench")
    @click.option("--quick", is_flag=True, help="Tiny sizes: every part in a minute or two.")
    @click.option("--parts", default=",".join(PARTS), show_default=True, callback=_callback(parse_parts),
                  help="Comma-separated parts to run.")
    @click.option("--ports", callback=_callback(parse_ports),
                  help="Comma-separated sizes of the control and API parts (ports in NB), e.g. 10000,100000; "
                       "default 10,1000,10000 (10,50 with --quick).")
    @click.option("--large", is_flag=True, help=f"Also the control and API parts at {LARGE_PORTS:,} ports.")
    @click.option("--out", "out_dir", type=click.Path(file_okay=False), default="bench-out", show_default=True)
    def bench(quick: bool, parts: tuple[str, ...], ports: tuple[int, ...] | None, large: bool, out_dir: str) -> None:
        """Measure datapath cost, end-to-end packets per second from a live-frames generator
        through dfxdp, kernel routing + iptables and OVS, TCP through security groups, the load
        balancer (and through its VIP against haproxy and iptables DNAT), the DNS responder against dnsmasq, the punt
        path with DHCP answers, the OVS fallback (BUM replication, default SNAT), and the control plane on a real
        etcd, and the API's creates, lists and pages at scale; write results.json, charts and summary.md."""
        if (ports or large) and not set(SIZED_PARTS) & set(parts):
            raise click.ClickException("--ports and --large size the control and api parts, which --parts leaves out")
        from rich.progress import Progress

        from dfxdp.bench import api, control, datapath, dns, fallback, lb, lb_compare, punt, report, throughput

        from .interrupt import clean_exit_on_signals

        clean_exit_on_signals()

        sizes = QUICK if quick else FULL
        sizes_run = tuple(sorted(set(ports or sizes.control_ports) | ({LARGE_PORTS} if large else set())))
        results: dict = {"machine": report.machine(), "quick": quick, "parts": list(parts),
                         "sizes": {**asdict(sizes), "control_ports": list(sizes_run)}, "load": {}}
        with Progress() as progress:
            def part(name: str, total: int | None):
                results["load"][name] = report.load()  # what else ran on the machine as this part began
                task = progress.add_task(name, total=total)

                def step(label: str) -> None:
                    progress.update(task, advance=1, description=f"{name}: {label}")
                return task, step

            if "datapath" in parts:
                task, step = part("datapath", 6 + len(datapath.SG_SIZES))
                results["datapath"] = [asdict(c) for c in datapath.measure(sizes.datapath_samples, step)]
                progress.update(task, description="datapath: done")
            if "lb" in parts:
                task, step = part("lb", 5 + len(lb_compare.PEERS))
                results["lb"] = [asdict(c) for c in lb.measure(sizes.datapath_samples, step)]
                results["lb_compare"] = [asdict(r) for r in lb_compare.measure(sizes.throughput_seconds,
                                                                               sizes.throughput_runs, step)]
                progress.update(task, description="lb: done")
            if "dns" in parts:
                task, step = part("dns", dns.STEPS)
                results["dns"] = asdict(dns.measure(sizes.datapath_samples, sizes.dns_seconds, step))
                progress.update(task, description="dns: done")
            if "throughput" in parts:
                task, step = part("throughput", 2 * len(throughput.ROUTERS) + len(throughput.TCP_RUNS))
                rates = throughput.measure(sizes.throughput_seconds, sizes.throughput_runs, step)
                tcp = throughput.measure_tcp(max(1.0, sizes.throughput_seconds), step)
                progress.update(task, description="throughput: done")
                results["throughput"] = report.throughput_rows([asdict(r) for r in rates])
                unfiltered = next(r.gbits_per_second for r in tcp if r.name == "dfxdp_unfiltered") or 1
                results["tcp"] = [{**asdict(r), "ratio_to_unfiltered": r.gbits_per_second / unfiltered} for r in tcp]
            if "punt" in parts:
                task, step = part("punt", 5)
                results["punt"] = asdict(punt.measure(sizes.punt_round_trips, sizes.punt_flood, step))
                results["dhcp"] = asdict(punt.measure_dhcp(sizes.punt_round_trips, sizes.punt_flood, step))
                progress.update(task, description="punt: done")
            if "fallback" in parts:
                task, step = part("fallback", len(fallback.REPLICATION) + 2)
                results["bum"] = [asdict(c) for c in fallback.measure_replication(sizes.fallback_frames, step)]
                results["snat"] = [asdict(c) for c in fallback.measure_snat(sizes.fallback_frames, step)]
                progress.update(task, description="fallback: done")
            if "control" in parts:
                task, _ = part("control", None)
                points = control.measure(list(sizes_run), sizes.control_samples, sizes.first_packet_samples,
                                         lambda label: progress.update(task, description=label))
                results["control"] = control.as_dicts(points)
                router = control.measure_router(sizes.router_subnets, lambda label: progress.update(task,
                                                                                                   description=label))
                progress.update(task, total=1, completed=1, description="control plane: done")
                results["control_router"] = asdict(router)
            if "api" in parts:
                task, step = part("api", api.steps(list(sizes_run)))
                results["api"] = [asdict(p) for p in api.measure(list(sizes_run), step, sizes.api_singles)]
                progress.update(task, description="api: done")
        for path in report.write(pathlib.Path(out_dir), results):
            click.echo(f"wrote {path}")
