"""`dfxdp agent`: the local controller of one chassis."""
from __future__ import annotations

import ipaddress
import logging
import signal

import click

from dfxdp.controller.ovs.bridge import DEFAULT_OVSDB
from dfxdp.nb.db import DEFAULT_URL
from dfxdp.nb.segments import DEFAULT_PHYSNET

from .options import parse_listen

AGENT_OPTIONS = [
    click.Option(["--chassis"], required=True, help="This node's chassis name (ports bind by binding:host_id)."),
    click.Option(["--tunnel-ip"], required=True, help="This node's VXLAN tunnel endpoint IPv4 address."),
    click.Option(["--underlay"], required=True, help="The NIC carrying VXLAN to other chassis."),
    click.Option(["--bridge-mappings"], default=None,
                 help="PHYSNET:IFACE[,PHYSNET:IFACE...]: the NIC of each physical network's router:external "
                      "networks, flat untagged, vlan 802.1Q-tagged (Neutron's bridge_mappings)."),
    click.Option(["--external-interface"], default=None,
                 help=f"Shorthand for --bridge-mappings {DEFAULT_PHYSNET}:IFACE."),
    click.Option(["--bpffs"], default=None, help="Where to pin maps and programs (default /run/dfxdp/bpffs/CHASSIS)."),
    click.Option(["--metrics-listen"], default="127.0.0.1:9870", show_default=True,
                 help="HOST:PORT for Prometheus /metrics."),
    click.Option(["--xdp-mode"], type=click.Choice(["native", "generic"]), default="native", show_default=True),
    click.Option(["--ovsdb"], default=DEFAULT_OVSDB, show_default=True,
                 help="OVSDB of this chassis' Open vSwitch, whose br-int the agent owns (the fallback for what "
                      "XDP passes; docs/fallback.md); `none`: no fallback."),
    click.Option(["--dns-upstream"], default=None, metavar="IP[:PORT]",
                 help="Resolver for the DNS queries XDP does not answer, on subnets without dns_nameservers "
                      "(without either, VMs get REFUSED)."),
    click.Option(["--dns-ttl"], type=click.IntRange(0, 86400), default=60, show_default=True,
                 help="TTL in seconds of the DNS answers XDP gives."),
]


def parse_bridge_mappings(value: str | None, external_interface: str | None) -> dict[str, str]:
    """physnet -> NIC from `--bridge-mappings a:IF[,b:IF]` and `--external-interface IF`."""
    mappings: dict[str, str] = {}
    for item in filter(None, (value or "").split(",")):
        physnet, sep, iface = item.strip().partition(":")
        if not sep or not physnet or not iface or physnet in mappings:
            raise click.BadParameter(f"{item!r}: expected PHYSNET:IFACE, each physical network once",
                                     param_hint="--bridge-mappings")
        mappings[physnet] = iface
    if external_interface:
        if mappings.get(DEFAULT_PHYSNET, external_interface) != external_interface:
            raise click.BadParameter(f"maps {DEFAULT_PHYSNET} to another NIC than --bridge-mappings",
                                     param_hint="--external-interface")
        mappings[DEFAULT_PHYSNET] = external_interface
    return mappings


def agent_config(db_url: str, chassis, tunnel_ip, underlay, bridge_mappings, external_interface, bpffs,
                 metrics_listen, xdp_mode, ovsdb, dns_upstream=None, dns_ttl=60):
    from dfxdp.controller.agent import AgentConfig
    from dfxdp.controller.dns_forwarder import parse_upstream
    from dfxdp.datapath.pipeline import default_bpffs

    try:
        if ipaddress.ip_address(tunnel_ip).version != 4:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{tunnel_ip!r} is not an IPv4 address", param_hint="--tunnel-ip") from None
    parse_listen(metrics_listen)
    if ovsdb != "none" and not ovsdb.startswith(("unix:", "tcp:", "ssl:")):
        raise click.BadParameter(f"{ovsdb!r} is not an OVSDB address (unix:PATH, tcp:IP:PORT) or `none`",
                                 param_hint="--ovsdb")
    try:
        upstream = parse_upstream(dns_upstream) if dns_upstream else None
    except (OSError, ValueError):
        raise click.BadParameter(f"{dns_upstream!r} is not IPv4[:PORT]", param_hint="--dns-upstream") from None
    mappings = parse_bridge_mappings(bridge_mappings, external_interface)
    return AgentConfig(chassis=chassis, tunnel_ip=tunnel_ip, underlay=underlay, db_url=db_url,
                       bpffs=bpffs or str(default_bpffs(chassis)), bridge_mappings=mappings,
                       metrics_listen=metrics_listen, xdp_mode=xdp_mode,
                       ovsdb=None if ovsdb == "none" else ovsdb, dns_upstream=upstream, dns_ttl=dns_ttl)


def start_agent_or_fail(config, store=None, pipeline=None):
    """An Agent started (its threads running), or a one-line ClickException. `pipeline`: a
    PipelineLoading begun early, abandoned if the agent cannot start."""
    from dfxdp.controller.agent import Agent
    from dfxdp.datapath.libbpf import BpfError
    from dfxdp.nb.db import StoreError

    try:
        agent = Agent(config, store, pipeline)
        agent.start()
        return agent
    except (ValueError, BpfError, StoreError, OSError) as exc:
        if pipeline is not None:
            pipeline.abandon()
        raise click.ClickException(f"agent {config.chassis} cannot start: {exc}") from None


def load_pipeline_early(chassis: str, bpffs: str | None):
    """The pipeline's load begun in a background thread, before the controller's modules are
    imported: the kernel verifies its programs while Python imports, each on a CPU (the two are
    most of a new chassis' start; docs/benchmarks.md)."""
    from dfxdp.datapath.pipeline import PipelineLoading, default_bpffs, pipeline_objects

    return PipelineLoading(bpffs or default_bpffs(chassis), pipeline_objects())


def register(group: click.Group) -> None:
    def agent(db_url, **opts):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        pipeline = load_pipeline_early(opts["chassis"], opts["bpffs"])
        try:
            config = agent_config(db_url, **opts)
        except click.BadParameter:
            pipeline.abandon()  # bad input changes nothing
            raise
        agent = start_agent_or_fail(config, pipeline=pipeline)
        signal.signal(signal.SIGTERM, lambda *_: agent.stop())
        try:
            agent.run_forever()
        except KeyboardInterrupt:
            agent.stop()

    group.add_command(click.Command(
        "agent", callback=agent, help="Run the local controller: NB → XDP maps on this chassis.",
        params=[click.Option(["--db", "db_url"], default=DEFAULT_URL, show_default=True, help="NB database URL."),
                *AGENT_OPTIONS]))
