"""The fallback runs the apps' upkeep (an IGMP querier's General Query) only once br-int is
connected to this agent: the answers come back as packet-ins, which a switch still
reconnecting to a restarted agent would drop, and the next query is two minutes away."""
from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from dfxdp.controller.apps.base import App, LocalView
from dfxdp.controller.ovs.bridge import INTEGRATION_BRIDGE
from dfxdp.controller.ovs.fallback import Fallback
from dfxdp.controller.ovs.flows import FlowResult
from dfxdp.metrics.fallback import FallbackMetrics


class Querier(App):
    name, tables, flow_cookie = "querier", (40,), 99

    def __init__(self):
        self.upkeeps = 0

    def flows(self, view):
        return []

    def fallback_upkeep(self, view):
        self.upkeeps += 1


def fallback(app: Querier, connections: dict) -> Fallback:
    fb = Fallback("unix:/nonexistent", "c1", "198.18.0.1", "lo", "02:00:00:00:00:01", [app], "127.0.0.1:0",
                  on_change=lambda: None, metrics=FallbackMetrics(CollectorRegistry()))
    fb._dpids = {INTEGRATION_BRIDGE: 1}
    fb._setup = fb._sync_ports = lambda *args: None
    fb.tunnels = SimpleNamespace(ensure_routes=lambda neighbors: None, underlay_flows=lambda ofports: [])
    fb.ovsdb = SimpleNamespace(ofports=lambda: {})
    fb.controller = SimpleNamespace(connection=connections.get)
    fb.reconcilers = {INTEGRATION_BRIDGE: SimpleNamespace(apply=lambda conn, wanted: FlowResult())}
    return fb


def test_upkeep_waits_for_br_int_to_connect():
    app = Querier()
    connections = {}
    fb = fallback(app, connections)
    view = LocalView(chassis="c1", tunnel_ip="198.18.0.1")
    fb._sync(view)
    assert app.upkeeps == 0  # not connected: a query now would be answered into the void
    connections[1] = object()  # br-int connects (which triggers a pass)
    fb._sync(view)
    assert app.upkeeps == 1
