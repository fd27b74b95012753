"""The OVS fallback of one chassis, brought in line with the LocalView on every agent pass.

Each pass (idempotent, so it also repairs what an OVS restart lost): br-int and
its settings, the tunnel port (and br-ul for userspace tunnels), the bound taps
as br-int ports (XDP stays attached to them: what it redirects never reaches
OVS, what it passes does), OVS's routes to the other chassis, then the flows of
every app that owns tables, reconciled through the OpenFlow connection.
Nothing here is fatal to the agent: without OVS the XDP datapath forwards on and
the fallback catches up once OVS is back.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterable

from dfxdp.controller.apps.base import App, LocalView
from dfxdp.controller.binding import TAP_PREFIX, tap_name
from dfxdp.metrics.fallback import FallbackMetrics

from .bridge import INTEGRATION_BRIDGE, Ovsdb, OvsError
from .flows import DIGEST_BITS, FlowReconciler, FlowResult, Owner
from .packet_in import PacketInLimiter
from .tunnels import UNDERLAY_BRIDGE, Tunnels

log = logging.getLogger(__name__)

UNDERLAY_OWNER = Owner("underlay", 0xff01, (0,))  # br-ul's one table, written by tunnels.py


class Fallback:
    def __init__(self, ovsdb_url: str, chassis: str, tunnel_ip: str, underlay: str, underlay_mac: str,
                 apps: Iterable[App], openflow_listen: str, on_change: Callable[[], None],
                 metrics: FallbackMetrics):
        self.ovsdb = Ovsdb(ovsdb_url)
        self.chassis, self.tunnel_ip, self.underlay, self.underlay_mac = chassis, tunnel_ip, underlay, underlay_mac
        self.apps = [app for app in apps if app.tables]
        self.reconcilers = {INTEGRATION_BRIDGE: FlowReconciler(
                                Owner(app.name, app.flow_cookie, app.tables) for app in self.apps),
                            UNDERLAY_BRIDGE: FlowReconciler([UNDERLAY_OWNER])}
        host, _, port = openflow_listen.rpartition(":")
        self.listen = (host, int(port))
        self.on_change, self.metrics = on_change, metrics
        self.controller = None
        self.tunnels: Tunnels | None = None
        self.datapath_type: str | None = None
        self._dpids: dict[str, int] = {}
        self._reachable: bool | None = None
        self._view: LocalView | None = None  # the last pass', with br-int's ports: what packet-ins are read with
        self.packet_in_limit = PacketInLimiter()

    def start(self) -> None:
        from .ofctl import OpenFlowController  # os-ken only where the fallback runs

        self.controller = OpenFlowController.shared(*self.listen)
        self.controller.add_listener(self._switch_changed)
        self.controller.add_packet_listener(self._packet_in)

    def _packet_in(self, dpid: int, cookie: int, in_port: int, frame: bytes) -> None:
        """A frame a flow sent to the controller: to the app owning the flow (by its cookie),
        with the port it came from, within the port's packet-in limit; a change it reports
        triggers a pass."""
        view = self._view
        if view is None or dpid != self._dpids.get(INTEGRATION_BRIDGE):
            return
        if not self.packet_in_limit.allow(in_port):
            self.metrics.packet_ins.labels("rate_limited").inc()
            return
        self.metrics.packet_ins.labels("handled").inc()
        port_id = next((pid for pid in view.local_ports if view.ofports.get(tap_name(pid)) == in_port), None)
        app = next((a for a in self.apps if a.flow_cookie == cookie >> DIGEST_BITS), None)
        if app is not None and app.on_packet_in(view, port_id, frame):
            self.on_change()

    def _switch_changed(self, dpid: int, connected: bool) -> None:
        for bridge, known in self._dpids.items():
            if known == dpid:
                self.metrics.connected.labels(bridge).set(int(connected))
                # A (re)connected switch may have lost its flows (an OVS restart): read them again.
                self.reconcilers[bridge].forget()
        self.on_change()

    def sync(self, view: LocalView) -> None:
        """Bring OVS to `view`; raises OvsError (the agent retries with backoff)."""
        if not self._up():
            return
        try:
            self._sync(view)
        except OSError:  # OvsError, or the OpenFlow connection failing (ofctl.OpenFlowError)
            self.metrics.errors.inc()
            raise

    def _up(self) -> bool:
        reachable = self.ovsdb.reachable()
        if reachable != self._reachable:
            (log.info if reachable else log.warning)(
                "OVSDB %s %s", self.ovsdb.url, "reachable: the OVS fallback is on" if reachable
                else "unreachable: the OVS fallback is off until it answers (XDP forwards on)")
            self._reachable = reachable
        self.metrics.ovsdb_up.set(int(reachable))
        return reachable

    def _setup(self) -> None:
        if self.datapath_type is None:
            self.datapath_type = self.ovsdb.choose_datapath_type()
            log.info("br-int datapath: %s (%s)", self.datapath_type,
                     "openvswitch kernel module" if self.datapath_type == "system"
                     else "userspace: no openvswitch kernel module here")
            self.metrics.datapath.labels(self.datapath_type).set(1)
            self.tunnels = Tunnels(self.ovsdb, self.datapath_type, self.chassis, self.tunnel_ip, self.underlay,
                                   self.underlay_mac, self.controller.target)
        self.ovsdb.ensure_bridge(INTEGRATION_BRIDGE, self.datapath_type, self.controller.target, self.chassis)
        self.tunnels.ensure(INTEGRATION_BRIDGE)
        for bridge in self.reconcilers if self.tunnels.native else (INTEGRATION_BRIDGE,):
            self._dpids[bridge] = self.ovsdb.dpid(bridge)

    def _sync(self, view: LocalView) -> None:
        self._setup()
        self._sync_ports(view)
        remote_ips = {c["tunnel_ip"] for c in view.chassis_by_name.values() if c.get("tunnel_ip") != view.tunnel_ip}
        self.tunnels.ensure_routes({ip: mac for ip, mac in view.underlay_neighbors.items() if ip in remote_ips})
        ofports = self.ovsdb.ofports()
        self.packet_in_limit.forget(set(ofports.values()))
        view = self._view = dataclasses.replace(view, ofports=ofports)
        wanted = {INTEGRATION_BRIDGE: {app.name: list(app.flows(view)) for app in self.apps},
                  UNDERLAY_BRIDGE: {UNDERLAY_OWNER.name: self.tunnels.underlay_flows(ofports)}}
        errors, connected = [], set()
        for bridge, dpid in self._dpids.items():
            connection = self.controller.connection(dpid)
            self.metrics.connected.labels(bridge).set(int(connection is not None))
            if connection is None:
                continue  # OVS connects to us on its own; the connection triggers a pass
            connected.add(bridge)
            result = self.reconcilers[bridge].apply(connection, wanted[bridge])
            self._observe(bridge, result)
            errors += result.errors
        if INTEGRATION_BRIDGE in connected:
            # Only then: what upkeep sends asks for answers that come back as packet-ins (an
            # IGMP query's reports), which a switch not yet connected to this agent would drop.
            for app in self.apps:
                app.fallback_upkeep(view)
        self._observe_snat()
        if errors:
            raise OvsError(f"{len(errors)} flows refused, first: {errors[0]}")

    def _sync_ports(self, view: LocalView) -> None:
        """Bound taps in br-int, gone ones out (OVS keeps a port whose device vanished)."""
        want = {tap_name(pid): pid for pid in view.local_ports}
        ports = self.ovsdb.ports(INTEGRATION_BRIDGE)
        for nic in sorted(set(view.bridge_mappings.values()) - set(ports)):
            # XDP stays on it too: OVS gets what XDP passes (default SNAT, controller/apps/snat.py)
            self.ovsdb.add_port(INTEGRATION_BRIDGE, nic)
            log.info("%s added to %s", nic, INTEGRATION_BRIDGE)
        have = {p for p in ports if p.startswith(TAP_PREFIX)}
        for name in sorted(want.keys() - have):
            self.ovsdb.add_port(INTEGRATION_BRIDGE, name, f"external_ids:iface-id={want[name]}")
            log.info("%s added to %s", name, INTEGRATION_BRIDGE)
        for name in sorted(have - want.keys()):
            self.ovsdb.del_port(INTEGRATION_BRIDGE, name)
            log.info("%s removed from %s", name, INTEGRATION_BRIDGE)

    def _observe_snat(self) -> None:
        """SNAT sessions: the connections OVS tracks in each zone this chassis SNATs in."""
        sessions = {}
        for app in self.apps:
            for router_id, zone in app.snat_zones().items():
                entries = self.ovsdb.appctl("dpctl/dump-conntrack", f"zone={zone}").splitlines()
                sessions[router_id] = sum(1 for line in entries if line.strip())
        self.metrics.observe_snat(sessions)

    def _observe(self, bridge: str, result: FlowResult) -> None:
        if result.added or result.removed:
            log.info("%s: %d flows added, %d removed%s", bridge, result.added, result.removed,
                     " (after a full dump)" if result.audited else "")
        for table, count in result.per_table.items():
            self.metrics.flows.labels(bridge, str(table)).set(count)
