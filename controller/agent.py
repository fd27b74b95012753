"""`dfxdp agent`: the local controller of one chassis.

Threads: the NB watch (feeds the selective cache), the link watcher (taps
appearing and going), the heartbeat, the punt reader (frames the datapath hands
to the apps). One loop turns "something changed" into one pass: build the
LocalView, run the apps, reconcile the maps, attach XDP to new taps, write port
status back to NB, run the apps' upkeep. A pass that fails is retried with
backoff; nothing here is fatal but a bad start-up (no underlay, no bpffs).
"""
from __future__ import annotations

import gc
import itertools
import logging
import pathlib
import threading
import time
from dataclasses import dataclass, field

from dfxdp.datapath import libbpf
from dfxdp.datapath.pipeline import Pipeline, PipelineLoading, pipeline_objects
from dfxdp.metrics.agent import AgentMetrics
from dfxdp.metrics.fallback import FallbackMetrics
from dfxdp.nb.db import StoreError, open_store
from dfxdp.nb.errors import NBError, NotFound
from dfxdp.nb.service import NBService
from dfxdp.nb.txn import NB
from dfxdp.nb.watcher import Snapshot, Watcher

from .apps import LocalView
from .apps.dhcp import DhcpApp
from .apps.dns import DEFAULT_TTL, DnsApp
from .binding import LinkWatcher, link_mac, tap_name
from .cache import SelectiveCache
from .desired import LOCAL_PORT, Change
from .health import HealthChecker
from .punt import PuntService
from .underlay import resolve_neighbors
from .wiring import DatapathControl, build_datapath_control

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 10.0
RESYNC_INTERVAL = 5.0  # a pass also runs this often: neighbour resolution, retries
MAX_BACKOFF = 5.0


@dataclass
class AgentConfig:
    chassis: str
    tunnel_ip: str
    underlay: str
    db_url: str
    bpffs: str
    bridge_mappings: dict[str, str] = field(default_factory=dict)  # physnet -> NIC of its external networks
    metrics_listen: str | None = None
    xdp_mode: str = "native"
    ovsdb: str | None = None  # the OVS fallback's database; None: no fallback
    openflow_listen: str = "127.0.0.1:6653"  # where br-int's controller (this agent) listens
    dns_upstream: tuple[str, int] | None = None  # resolver for subnets without dns_nameservers
    dns_ttl: int = DEFAULT_TTL
    # stages built outside this tree (a hook slot runs them: docs/architecture.md), loaded with
    # the pipeline so that their maps are pinned with its own and the apps' reconciler owns them
    stage_objects: tuple[pathlib.Path, ...] = ()


class Agent:
    def __init__(self, config: AgentConfig, store=None, pipeline: PipelineLoading | None = None):
        """`pipeline`: its load started early by the caller (`dfxdp agent`), else loaded in start()."""
        self.config = config
        self._pipeline_loading = pipeline
        self.store = store or open_store(config.db_url)
        self.nb = NBService(self.store)
        self.cache = SelectiveCache(config.chassis)
        self.pipeline: Pipeline | None = None
        self.control: DatapathControl | None = None  # the apps and the reconciler, once maps are loaded
        self.punt: PuntService | None = None
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._cache_lock = threading.Lock()
        self._attached: dict[int, int] = {}   # ifindex -> program id we attached
        self._status: dict[str, str] = {}     # port id -> status we last wrote
        self._lb_reported: dict[str, int] = {}  # load balancer id -> revision we reported ACTIVE
        self._neighbors: dict[str, str] = {}
        self.passes = 0
        self.errors = 0
        self.watcher: Watcher | None = None
        self.links: LinkWatcher | None = None
        self.metrics = AgentMetrics()
        self._event_at: float | None = None  # when the oldest NB change not yet programmed arrived
        self._looping = False
        self.fallback = None  # the OVS fallback (controller/ovs/fallback.py), when the agent has one
        self.health: HealthChecker | None = None
        self._last_local: dict[str, int] = {}  # the last pass' local ports
        self._last_facts: tuple | None = None  # the last pass' own facts of this chassis

    # ---- start / stop ----------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        self.underlay_ifindex, self.underlay_mac = link_mac(cfg.underlay)
        self.bridges = {physnet: link_mac(nic) for physnet, nic in cfg.bridge_mappings.items()}
        # NB's snapshot is read into the cache while the pipeline loads (both take a while on a new chassis)
        self.watcher = Watcher(self.store, NB)
        watch = threading.Thread(target=self._watch_loop, name="nb-watch", daemon=True)
        watch.start()
        try:
            self._start_datapath()
        except BaseException:
            self.watcher.cancel()
            raise
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        heartbeat.start()
        self._threads = [watch, heartbeat]
        log.info("agent %s up: tunnel %s on %s, bpffs %s", cfg.chassis, cfg.tunnel_ip, cfg.underlay, cfg.bpffs)

    def _start_datapath(self) -> None:
        cfg = self.config
        # Adopt what a previous agent pinned: maps keep their entries, programs are replaced atomically.
        self.pipeline = (self._pipeline_loading.result() if self._pipeline_loading
                         else Pipeline(cfg.bpffs).load([*pipeline_objects(), *cfg.stage_objects]))
        self.control = build_datapath_control(self.pipeline.maps, options={
            DnsApp: {"ttl": cfg.dns_ttl, "upstream": cfg.dns_upstream},
            DhcpApp: {"on_count": self._count_dhcp}})
        self.nb.upsert_chassis(cfg.chassis, cfg.tunnel_ip, bridge_mappings=cfg.bridge_mappings)
        self.metrics.heartbeat.set_to_current_time()
        self.metrics.serve_datapath(lambda: self.pipeline.maps if self.pipeline else {})
        if cfg.metrics_listen:
            self.metrics.start(cfg.metrics_listen)
        self.links = LinkWatcher(self._dirty.set)
        if cfg.ovsdb:
            from .ovs.fallback import Fallback  # here: os-ken and OVS's libraries only where a fallback runs

            self.fallback = Fallback(cfg.ovsdb, cfg.chassis, cfg.tunnel_ip, cfg.underlay, self.underlay_mac,
                                     self.control.apps, cfg.openflow_listen, self._dirty.set,
                                     FallbackMetrics(self.metrics.registry))
            self.fallback.start()
        self.health = HealthChecker(self.nb.set_member_status)
        if not self.pipeline.live:
            self._refill_replaced_maps()
        self._attach(self.underlay_ifindex, "underlay")
        for ifindex in sorted({ifindex for ifindex, _ in self.bridges.values()}):
            self._attach(ifindex, "port")
        self.punt = PuntService(self.pipeline.maps, self.control.apps,
                                on_count=lambda outcome: self.metrics.punt_records.labels(outcome).inc()).start()

    def _count_dhcp(self, outcome: str) -> None:
        self.metrics.dhcp_messages.labels(outcome).inc()

    def _refill_replaced_maps(self) -> None:
        """An upgrade recreated some maps empty (new layout). Fill them from NB before the
        new programs take traffic: until go_live() the old programs keep forwarding with
        the old maps, so no frame meets an empty policy or forwarding table."""
        log.warning("maps recreated for a new layout: %s; refilling before going live",
                    ", ".join(sorted(self.pipeline.replaced_maps)))
        with self._cache_lock:
            self._reload_cache()
        self.links.refresh()
        result = self.control.apply(self.build_view())
        if result.errors:
            raise OSError(f"refilling recreated maps: {len(result.errors)} updates failed, first: {result.errors[0]}")
        self.pipeline.go_live()

    def run_forever(self) -> None:
        self._looping = True
        try:
            self._loop()
        finally:
            self._looping = False
            self._release_pipeline()  # here, not in stop(): a pass may still be using the maps

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            idle = not self._dirty.wait(RESYNC_INTERVAL)
            if idle and self.links:
                self.links.refresh()  # a safety net under the link events, off the event passes' path
            if self._stop.is_set():
                break
            self._dirty.clear()
            try:
                self.sync_once()
                backoff = 0.1
                continue
            except (OSError, StoreError, NBError) as exc:
                log.warning("agent pass failed (%s); retrying in %.1fs", exc, backoff)
            except Exception:  # a bug in one app's pass must not stop the others: XDP forwards on
                log.exception("agent pass failed unexpectedly; retrying in %.1fs", backoff)
            self.errors += 1
            self.metrics.reconcile_errors.inc()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            self._dirty.set()

    def stop(self) -> None:
        """Stop the agent; pinned maps and XDP attachments stay: forwarding goes on."""
        self._stop.set()
        self._dirty.set()
        if self.watcher:
            self.watcher.cancel()
        if self.links:
            self.links.close()
        if self.punt:
            self.punt.stop()  # before the pipeline's maps are released
        if self.health:
            self.health.close()
        if not self._looping:
            self._release_pipeline()

    def _release_pipeline(self) -> None:
        if self.pipeline:
            self.pipeline.close()

    # ---- threads ------------------------------------------------------------
    def _watch_loop(self) -> None:
        for item in self.watcher:
            with self._cache_lock:
                if isinstance(item, Snapshot):
                    loading = time.monotonic()
                    self.cache.load(item.kvs, item.revision)
                    log.info("NB snapshot at revision %d: %d objects in view, read in %.2f s", item.revision,
                             self.cache.size(), time.monotonic() - loading)
                elif self.cache.apply(item):
                    self._reload_cache()  # interest widened: reread what we skipped
                if self._event_at is None:
                    self._event_at = time.monotonic()
            self._dirty.set()

    def _reload_cache(self) -> None:
        """Rebuild the cache from a full read of NB (caller holds the cache lock)."""
        pages, revision = self.store.range_pages(NB)
        self.cache.load(itertools.chain.from_iterable(pages), revision)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL):
            try:
                try:
                    self.nb.heartbeat(self.config.chassis)
                except NotFound:  # an operator deleted its agent record: register again, as Neutron's agents do
                    self.nb.upsert_chassis(self.config.chassis, self.config.tunnel_ip,
                                           bridge_mappings=self.config.bridge_mappings)
                self.metrics.heartbeat.set_to_current_time()
            except (StoreError, NBError) as exc:
                log.warning("heartbeat failed: %s", exc)

    # ---- one pass -------------------------------------------------------------
    def local_ports(self, ports: dict[str, dict]) -> dict[str, int]:
        """Ports bound here whose tap is up: port id -> ifindex."""
        links = self.links.snapshot() if self.links else {}
        mine = self.cache.indexes["port"].ids("host", self.config.chassis)
        return {pid: links[tap_name(pid)] for pid in sorted(mine) if pid in ports and tap_name(pid) in links}

    def build_view(self) -> LocalView:
        """The view of this pass over the cache's own dicts (no copy: 100,000 ports). The caller
        holds the cache lock while apps read it; afterwards only copying lookups are safe
        (the punt thread's, apps/base.py)."""
        objs = self.cache.objects
        remote_ips = sorted({c["tunnel_ip"] for c in objs["chassis"].values() if c["name"] != self.config.chassis})
        missing = [ip for ip in remote_ips if ip not in self._neighbors]
        if missing:
            self._neighbors.update(resolve_neighbors(missing, self.underlay_ifindex))
        view = LocalView(
            chassis=self.config.chassis, tunnel_ip=self.config.tunnel_ip, objects=objs,
            local_ports=self.local_ports(objs["port"]), underlay_ifindex=self.underlay_ifindex,
            underlay_mac=self.underlay_mac, underlay_mtu=self.links.mtu(self.underlay_ifindex) if self.links else 0,
            underlay_neighbors=dict(self._neighbors),
            bridges=dict(self.bridges), bridge_mappings=dict(self.config.bridge_mappings),
            indexes=self.cache.indexes)
        if self.health:
            view.lb_probe_ifindex = self.health.update(view)
        return view

    def _changes(self, view: LocalView) -> list[Change] | None:
        """What changed since the last pass (None: derive everything): the cache's changed
        objects and the taps that came, went or changed; a change of this chassis' own
        facts (underlay, neighbours, probe sources) asks for a full pass."""
        changes = self.cache.take_changes()
        facts = (view.tunnel_ip, view.underlay_ifindex, view.underlay_mac, view.underlay_mtu,
                 tuple(sorted(view.underlay_neighbors.items())), tuple(sorted(view.bridges.items())),
                 tuple(sorted(view.lb_probe_ifindex.items())))
        last_local, self._last_local = self._last_local, view.local_ports
        if changes is None or facts != self._last_facts:
            self._last_facts = facts
            return None
        changes += [Change(LOCAL_PORT, pid, last_local.get(pid), view.local_ports.get(pid))
                    for pid in last_local.keys() | view.local_ports.keys()
                    if last_local.get(pid) != view.local_ports.get(pid)]
        return changes

    def sync_once(self) -> LocalView:
        started, event_at, self._event_at = time.monotonic(), self._event_at, None
        with self._cache_lock:  # the view is the cache's own dicts: the watch thread waits
            locked = time.monotonic()
            view = self.build_view()
            changes = self._changes(view)
            result = self.control.apply(view, changes=changes)
            if changes is None:
                log.info("full pass over %d objects: %.2f s", self.cache.size(), time.monotonic() - locked)
            collect_pass_garbage(full=changes is None, audited=result.audited)
            self.passes += 1
            # Maps first, then attach: a tap's first frame already finds its port record.
            for ifindex in [*view.local_ports.values(), *view.lb_probe_ifindex.values()]:
                self._attach(ifindex, "port")
            self._report_status(view)
            if not result.errors:
                self._report_loadbalancers(view)
            for app in self.control.apps:  # after the new entries are in (e.g. the SG app ends refused flows)
                app.upkeep(view, self.pipeline.maps)
        self.punt.view = view
        self._observe(view, started, event_at)
        if self.fallback:  # after XDP is attached: OVS only ever sees what XDP passes
            self.fallback.sync(view)
            self._publish_facts(view)
        if result.errors:
            raise OSError(f"{len(result.errors)} map updates failed, first: {result.errors[0]}")
        return view

    def _publish_facts(self, view: LocalView) -> None:
        """The apps' facts about this chassis into its NB record, when they changed."""
        facts = {k: v for app in self.control.apps for k, v in app.chassis_facts(view).items()}
        self.fallback.metrics.observe_igmp(facts.get("igmp_groups", {}))
        mine = view.chassis_by_name.get(self.config.chassis, {})
        if any(mine.get(k) != v for k, v in facts.items()):
            self.nb.set_chassis_facts(self.config.chassis, **facts)

    def _observe(self, view: LocalView, started: float, event_at: float | None) -> None:
        m, now = self.metrics, time.monotonic()
        m.reconcile_runs.inc()
        m.reconcile_seconds.observe(now - started)
        if event_at is not None:
            m.convergence_seconds.observe(now - event_at)
        m.cache_objects.set(self.cache.size())
        m.bound_ports.set(len(view.local_ports))
        m.watch_lag.set(max(0, self.store.revision() - self.cache.revision))

    def _attach(self, ifindex: int, kind: str) -> None:
        entry = self.pipeline.entry(kind)
        attached, _ = libbpf.xdp_query(ifindex)
        ours = self._attached.get(ifindex)
        if attached and attached == ours:
            return
        self.pipeline.attach(ifindex, kind, self.config.xdp_mode)
        self._attached[ifindex] = libbpf.xdp_query(ifindex)[0]
        log.info("attached %s to ifindex %d", entry.name, ifindex)

    def _report_status(self, view: LocalView) -> None:
        for port in view.ports_by("host", self.config.chassis):
            pid = port["id"]
            status = "ACTIVE" if pid in view.local_ports else "DOWN"
            if port.get("status") != status and self._status.get(pid) != status:
                self.nb.set_port_status(pid, status)
                self._status[pid] = status


    def _report_loadbalancers(self, view: LocalView) -> None:
        """Load balancers this pass programmed (their VIP's network is in view) leave PENDING_*."""
        for lb in list(view.loadbalancers.values()):
            port = view.ports.get(lb.get("vip_port_id") or "")
            if str(lb.get("provisioning_status")).startswith("PENDING_") and port and \
                    port["network_id"] in view.networks and self._lb_reported.get(lb["id"]) != lb["revision_number"]:
                self.nb.set_loadbalancer_active(lb["id"], lb["revision_number"])
                self._lb_reported[lb["id"]] = lb["revision_number"]


def collect_pass_garbage(full: bool, audited: bool) -> None:
    """After a pass. A full pass: the cache and the state it built live as long as the agent,
    so later garbage collections need not walk them (a full one took 160 ms at 10,000 ports,
    a pause any event's pass could meet): collected first, so no garbage is frozen with
    them, then frozen. An audit: after a freeze the collector's own full collection waits for
    new objects a quarter of the frozen count, which a few cycles never reach, so any cycle
    holding an audit's reads (tens of MiB at 100,000 ports) would stay: when its passes were
    such cycles, RSS grew 306 → 808 MiB in 13 idle minutes at 100,000 ports. The reconciler's
    passes no longer form cycles (test_reconciler); this collection guards the rest of the
    pass, and walks only what is not frozen."""
    if full or audited:
        gc.collect()
    if full:
        gc.freeze()


def run_agent(config: AgentConfig, store=None, ready: threading.Event | None = None) -> Agent:
    """Start an agent and run its loop in this thread until stop()."""
    agent = Agent(config, store)
    agent.start()
    if ready is not None:
        ready.set()
    agent.run_forever()
    return agent

