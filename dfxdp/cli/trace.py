"""`dfxdp trace PORT PACKET`: explain what the pipeline does to a packet from a port."""
from __future__ import annotations

import json
import socket

import click

from dfxdp.controller.ovs.bridge import DEFAULT_OVSDB


def register(group: click.Group) -> None:
    @group.command("trace")
    @click.argument("port")
    @click.argument("packet")
    @click.option("--bpffs", default=None, help="The chassis' pins (default /run/dfxdp/bpffs/<the port's host>).")
    @click.option("--url", envvar="DFXDP_URL", default="http://127.0.0.1:9696", show_default=True,
                  help="API to resolve PORT (id or name).")
    @click.option("--ifindex", type=int, default=None,
                  help="Ingress interface index, instead of the port's tap (also for the underlay/external NIC).")
    @click.option("--entry", type=click.Choice(["port", "underlay"]), default="port", show_default=True)
    @click.option("--ovsdb", default=DEFAULT_OVSDB, show_default=True,
                  help="The chassis' OVSDB: a frame XDP passes is traced through br-int too; `none`: not.")
    @click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text")
    def trace_cmd(port, packet, bpffs, url, ifindex, entry, ovsdb, fmt) -> None:
        """Run PACKET (scapy syntax, hex, or a pcap file) through the live pinned pipeline as if it
        came from PORT, and tell the story: stages, verdict and why, where it would go, the output.

        \b
        Example: dfxdp trace vm1 'Ether(dst="fa:16:3e:00:00:02")/IP(dst="10.0.0.3")/TCP(dport=22)'
        It does not disturb live traffic; it may add a conntrack entry and moves counters (see docs/trace.md).
        A frame XDP passes to the kernel goes to the OVS fallback: OVS's ofproto/trace tells what br-int does.
        """
        from dfxdp.datapath.libbpf import BpfError
        from dfxdp.datapath.pipeline import default_bpffs
        from dfxdp.trace import parse_packet, trace

        try:
            frame = parse_packet(packet)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="PACKET") from None
        if ifindex is None or bpffs is None:
            from dfxdp.cli.resources import Api, resolve
            from dfxdp.controller.binding import tap_name

            api = Api(url, None)
            port_doc = api.call("GET", f"/v2.0/ports/{resolve(api, 'port', port)}")["port"]
            if ifindex is None:
                try:
                    ifindex = socket.if_nametoindex(tap_name(port_doc["id"]))
                except OSError:
                    raise click.ClickException(f"port {port} has no tap {tap_name(port_doc['id'])} here: run "
                                               f"trace on its chassis ({port_doc['binding:host_id'] or 'unbound'})")
            bpffs = bpffs or str(default_bpffs(port_doc["binding:host_id"]))
        try:
            result = trace(bpffs, ifindex, frame, entry)
        except (FileNotFoundError, BpfError) as exc:
            raise click.ClickException(str(exc)) from None
        if result.run.verdict == "XDP_PASS" and entry == "port" and ovsdb != "none":
            from dfxdp.controller.ovs.bridge import OvsError
            from dfxdp.trace import ovs_trace

            try:
                result.fallback = ovs_trace(ovsdb, result.ingress, result.run.data)
            except OvsError as exc:
                result.fallback = f"not traced: {exc}"
        click.echo(json.dumps(result.as_dict(), indent=2) if fmt == "json" else result.story())
