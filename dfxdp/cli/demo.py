"""`dfxdp demo`: a two-chassis deployment on the embedded default, shown working.

Two networks joined by a distributed router, VMs on both chassis (one of them
configured by DHCP, answered by its chassis' agent), a floating IP
reached from an outside host, a network no router joins, real ping and iperf3
traffic through XDP, and the per-stage counters of each chassis.
"""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import tempfile
import time

import click


def _counter_table(title: str, counters: dict):
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (("counter", "left"), ("packets", "right"), ("bytes", "right")):
        table.add_column(col, justify=justify)
    for group, rows in counters.items():
        for name, value in rows.items():
            if value.get("packets"):
                table.add_row(f"{group}/{name}", str(value["packets"]), str(value["bytes"]))
    return table


def run_demo(console) -> bool:
    """Returns True when every check held."""
    from dfxdp.datapath.pipeline import pinned_counters
    from dfxdp.testing.cluster import OUTSIDE_IP, Cluster
    from dfxdp.testing.dhcp import UDHCPC_SCRIPT, Client
    from dfxdp.testing.netns import Topology, run

    results = []

    def check(label: str, ok: bool, detail: str = "") -> None:
        results.append(ok)
        console.print(f"  {'[green]✔' if ok else '[red]✘'}[/] {label}{' — ' + detail if detail else ''}")

    with Topology("demo") as topo:
        console.print("[bold]1. deployment[/]: fabric (API server, sqlite NB), 2 chassis each with `dfxdp agent`")
        cluster = Cluster(topo, chassis=2, db="sqlite")
        try:
            c = cluster.connect()
            console.print("[bold]2. topology through the Neutron API[/]")
            ext = c.network.create_network(name="public", is_router_external=True)
            c.network.create_subnet(network_id=ext.id, cidr="198.19.0.0/24", ip_version=4, gateway_ip="198.19.0.1",
                                    allocation_pools=[{"start": "198.19.0.10", "end": "198.19.0.99"}])
            blue = c.network.create_network(name="blue")
            blue_sub = c.network.create_subnet(network_id=blue.id, cidr="10.0.0.0/24", ip_version=4)
            green = c.network.create_network(name="green")
            green_sub = c.network.create_subnet(network_id=green.id, cidr="10.1.0.0/24", ip_version=4)
            red = c.network.create_network(name="red")
            c.network.create_subnet(network_id=red.id, cidr="10.2.0.0/24", ip_version=4)
            router = c.network.create_router(name="router", external_gateway_info={"network_id": ext.id})
            c.network.add_interface_to_router(router, subnet_id=blue_sub.id)
            c.network.add_interface_to_router(router, subnet_id=green_sub.id)
            vms, ports = {}, {}
            for name, net, ch in (("web", blue, 0), ("db", green, 1), ("intruder", red, 0)):
                ports[name] = c.network.create_port(network_id=net.id, binding_host_id=cluster.chassis[ch].name,
                                                    name=name)
                # db gets its address, router and MTU by DHCP; the others are configured by hand
                vms[name] = cluster.plug(ports[name], cluster.chassis[ch], name=name, configure_ip=name != "db")
            for port in ports.values():
                cluster.wait_active(port.id)
            fip = c.network.create_ip(floating_network_id=ext.id, port_id=ports["web"].id)
            default = next(c.network.security_groups(name="default"))
            c.network.create_security_group_rule(security_group_id=default.id, direction="ingress", protocol="icmp",
                                                 remote_ip_prefix="0.0.0.0/0")
            addr = {n: p.fixed_ips[0]["ip_address"] for n, p in ports.items()}
            console.print("  security group `default` + ingress ICMP from anywhere")
            console.print(f"  networks blue 10.0.0.0/24 + green 10.1.0.0/24 (router), red 10.2.0.0/24 (alone); "
                          f"web {addr['web']} on ch1, db {addr['db']} on ch2, intruder {addr['intruder']} on ch1; "
                          f"floating IP {fip.floating_ip_address} → web")

            console.print("[bold]3. DHCP[/]")
            with tempfile.TemporaryDirectory(prefix="dfxdp-demo-") as tmp:
                client = Client(pathlib.Path(tmp), "db", UDHCPC_SCRIPT)
                # -q: quit once bound; -n: fail after the tries instead of running on
                run(["busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0", "-s", str(client.script), "-t", "10",
                     "-T", "1", "-O", "mtu"], ns=vms["db"], check=False, timeout=60)
                told = client.env("bound") if "bound" in client.events() else {}
            link = run(["ip", "-o", "addr", "show", "dev", "eth0"], ns=vms["db"]).stdout + \
                run(["ip", "link", "show", "eth0"], ns=vms["db"]).stdout
            check("db configured by DHCP from its chassis' agent (udhcpc)",
                  told.get("ip") == addr["db"] and f"inet {addr['db']}/24" in link and "mtu 1450" in link,
                  f"address {told.get('ip')}/{told.get('mask')}, router {told.get('router')}, "
                  f"MTU {told.get('mtu')}, DNS {told.get('dns')}, server {told.get('serverid')}")

            console.print("[bold]4. traffic[/]")
            check("web → db routed across chassis (ping)", cluster.ping(vms["web"], addr["db"]))
            server = topo.popen(["iperf3", "-s", "-1"], ns=vms["db"], stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            out = run(["iperf3", "-c", addr["db"], "-t", "2", "-J"], ns=vms["web"], check=False, timeout=30).stdout
            server.wait(10)
            try:
                rate = json.loads(out)["end"]["sum_received"]["bits_per_second"]
                check("web → db TCP transfer (iperf3)", rate > 0, f"{rate / 1e9:.2f} Gbit/s")
            except (ValueError, KeyError):
                check("web → db TCP transfer (iperf3)", False, out[-200:])
            check(f"outside host → floating IP {fip.floating_ip_address}",
                  cluster.ping(cluster.outside, fip.floating_ip_address))
            check(f"web → outside host {OUTSIDE_IP} (SNAT to its floating IP)", cluster.ping(vms["web"], OUTSIDE_IP))
            trace = run(["traceroute", "-n", "-q", "1", "-w", "1", addr["db"]], ns=vms["web"], check=False).stdout
            hops = re.findall(r"^\s*\d+\s+(\S+)", trace, re.M)
            check("traceroute web → db: the router is one hop", hops == ["10.0.0.1", addr["db"]], " → ".join(hops))
            check("isolation: intruder (red) cannot reach web (blue)",
                  not cluster.ping(vms["intruder"], addr["web"], count=1, wait=3))

            console.print("[bold]5. XDP counters[/]")
            for ch in cluster.chassis:
                console.print(_counter_table(f"chassis {ch.name}", pinned_counters(ch.bpffs)))
        finally:
            cluster.close()
    return all(results)


def register(group: click.Group) -> None:
    @group.command("demo")
    def demo() -> None:
        """Two chassis on the embedded DB: DHCP, routing, a floating IP, isolation, counters."""
        from rich.console import Console

        from .interrupt import clean_exit_on_signals

        clean_exit_on_signals()
        try:
            ok = run_demo(Console())
        except (RuntimeError, OSError, AssertionError) as exc:
            raise click.ClickException(str(exc)) from None
        if not ok:
            raise click.ClickException("some demo checks failed (see above)")
