"""What every controller app sees and returns.

An app is a pure translation: from the chassis' local view of the NB database
(`LocalView`) to the map entries the datapath should hold (`Entry`). Its
desired() never touches libbpf or OVS; the reconciler compares what apps want
with what the maps hold and applies the difference (add before delete). Only
after that may an app act on the datapath itself (upkeep), and it may answer
frames the datapath punts to it (on_punt): see App.

Adding a service: docs/architecture.md, "Where to add a new service" (its NB kind,
maps, stage and app, each one file and one line that lists it).
"""
from __future__ import annotations

import socket
import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Mapping, NamedTuple, TypeVar

from ..kind_index import KindIndex

from dfxdp.nb import kinds
from dfxdp.nb.segments import DEFAULT_PHYSNET

if TYPE_CHECKING:  # only for annotations: punt.py imports this module
    from dfxdp.datapath.libbpf import Map

    from ..desired import Change
    from ..punt import PuntedPacket

WHOLE = "whole"  # the one scope of an app that derives its entries all at once

T = TypeVar("T")


class Entry(NamedTuple):
    """One desired map entry. key/value: an int, or a dict of struct fields
    (arrays as lists or bytes) of the map's key/value struct from maps/*.h.
    A named tuple: a full pass makes half a million (a frozen dataclass costs
    several times as much to make)."""

    map: str
    key: Any
    value: Any


@dataclass(init=False)
class LocalView:
    """The NB objects this chassis needs (selective topology), by id, plus local facts.

    Objects are the NB JSON documents as stored under /dfxdp/nb/<kind>/<id>
    (see docs/api.md): every object has `id` and `key` (its datapath integer;
    a network's key is its VNI). `objects` holds them by kind; each kind's are
    also an attribute named as its declaration says (dfxdp/nb/kinds.py: view.ports,
    view.networks, view.members …), given to the constructor under that name or in
    `objects`. Lookups the apps make often come from the kinds' indexes:
    view.find("port", "network", network_id), never a scan of every object.
    """

    chassis: str
    tunnel_ip: str
    objects: dict[str, dict[str, dict]]  # kind -> id -> document
    # probe-source port id (network:lb-hm) -> ifindex of its veth's pipeline end here (controller/health.py)
    lb_probe_ifindex: dict[str, int] = field(default_factory=dict)
    local_ports: dict[str, int] = field(default_factory=dict)  # port id -> ifindex of its tap
    underlay_ifindex: int = 0
    underlay_mac: str = ""
    underlay_mtu: int = 0  # the underlay NIC's MTU, what outer packets may reach; 0: unknown, not checked
    # next-hop MAC on the underlay for each remote chassis' tunnel IP, resolved by the agent
    underlay_neighbors: dict[str, str] = field(default_factory=dict)
    # physical network -> (ifindex, MAC) of the NIC its external networks go by (`--bridge-mappings`)
    bridges: dict[str, tuple[int, str]] = field(default_factory=dict)
    bridge_mappings: dict[str, str] = field(default_factory=dict)  # physical network -> its NIC\'s name
    ofports: dict[str, int] = field(default_factory=dict)  # br-int's interfaces by name -> OpenFlow port
    # what one pass computes once and several parts use (e.g. compiled security policies)
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # kind -> (the documents it was built from, their index): rebuilt when a kind's documents are
    # replaced (the view never edits them in place)
    _indexes: dict[str, tuple[dict, KindIndex]] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __init__(self, chassis: str, tunnel_ip: str, objects: Mapping[str, dict[str, dict]] | None = None,
                 **given: Any):
        self.chassis, self.tunnel_ip, self._indexes = chassis, tunnel_ip, {}
        self.objects = {kind.name: {} for kind in kinds.KINDS}
        self.objects.update(objects or {})
        for kind in kinds.KINDS:
            object.__setattr__(self, kind.view, self.objects[kind.name])
        for name, value in given.items():
            if name not in kinds.BY_VIEW and name not in _FACTS:
                raise TypeError(f"LocalView has no field {name!r}")
            setattr(self, name, value)
        for name, fact in _FACTS.items():
            if name not in given:
                setattr(self, name, fact.default_factory() if fact.default is MISSING else fact.default)

    def __setattr__(self, name: str, value: Any) -> None:
        kind = kinds.BY_VIEW.get(name)
        if kind is not None:  # a kind's documents: `objects` and the attribute are one
            self.objects[kind.name] = value
        object.__setattr__(self, name, value)

    def find(self, kind: str, index: str, value: Any) -> list[dict]:
        """The documents of `kind` filed under `value` in its index `index` (dfxdp/nb/kinds.py;
        a document without the field is filed under none), a copy."""
        return self.index_of(kind).find(index, value)

    def filed(self, kind: str, index: str, value: Any) -> Mapping[str, dict]:
        """As find(), id -> document, the index's own: for a pass that reads a few of many."""
        return self.index_of(kind).filed(index, value)

    def ids(self, kind: str, index: str, value: Any) -> list[str]:
        return self.index_of(kind).ids(index, value)

    def index_of(self, kind: str) -> KindIndex:
        """The kind's index: the agent's cache's (kept event by event), else one built from the
        view's documents on first use and again when they are replaced (tests, the bench)."""
        docs = self.objects.get(kind, {})
        if self.indexes is not None and kind in self.indexes:
            return self.indexes[kind]
        built = self._indexes.get(kind)
        if built is None or built[0] is not docs:
            # a copy of the documents: the agent's cache may change while the punt thread reads
            built = self._indexes[kind] = (docs, KindIndex.of(kinds.BY_NAME[kind], list(docs.values())))
        return built[1]

    # the kinds' indexes kept by the agent's cache (controller/cache.py): kind -> its index;
    # None: built from the view's documents when first asked
    indexes: dict[str, KindIndex] | None = field(default=None, repr=False, compare=False)

    # --- lookups shared by the apps ---
    def ports_by(self, index: str, value: Any) -> list[dict]:
        """The ports filed under `value` in the port kind's index `index`, ordered by id."""
        return sorted(self.find("port", index, value), key=_by_id)

    def ports_on_network(self, network_id: str) -> list[dict]:
        return self.ports_by("network", network_id)

    def subnets_of(self, network_id: str) -> list[dict]:
        return self.find("subnet", "network", network_id)

    def ports_of(self, owner: str, device_id: str) -> list[dict]:
        """The ports an NB object owns (device_owner, device_id): a router's interfaces …"""
        return self.ports_by("device", (owner, device_id))

    def tunnel_ip_of(self, port: dict) -> str | None:
        """The tunnel IP of the chassis hosting `port`, None when unknown or unbound."""
        ch = self.chassis_by_name.get(port.get("binding:host_id") or "")
        return ch.get("tunnel_ip") if ch else None

    def is_local(self, port: dict) -> bool:
        return port["id"] in self.local_ports

    def external_nic(self, net: dict) -> int:
        """The ifindex of the NIC an external network's frames go by here, 0 if its physical
        network is not mapped on this chassis."""
        return self.bridges.get(net.get("provider:physical_network") or DEFAULT_PHYSNET, (0, ""))[0]


def _by_id(doc: Mapping) -> str:
    return doc["id"]


_FACTS = {f.name: f for f in fields(LocalView) if f.init and f.name not in ("chassis", "tunnel_ip", "objects")}


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def ipv4_be32(address: str) -> int:
    """An IPv4 address as the __be32 the datapath compares (network byte order in memory)."""
    return int.from_bytes(socket.inet_aton(address), sys.byteorder)


def ipv4_addresses(port: dict) -> list[str]:
    # NB holds validated addresses: a colon is enough to tell IPv6 (and much cheaper at 100,000 ports)
    return [f["ip_address"] for f in port.get("fixed_ips", []) if ":" not in f["ip_address"]]


def _same(old: tuple, new: tuple) -> bool:
    return len(old) == len(new) and all(a is b or (type(a) is not dict and a == b) for a, b in zip(old, new))


class Memo:
    """What an app derived from each object last pass, reused while its inputs are unchanged.

    Inputs are compared by identity for NB documents (the cache replaces a
    document on every change and never edits one in place) and by value for
    anything else. What a pass did not ask for is forgotten at the next one.
    """

    def __init__(self) -> None:
        self._last: dict[Any, tuple[tuple, Any]] = {}
        self._this: dict[Any, tuple[tuple, Any]] = {}

    def new_pass(self) -> None:
        self._last, self._this = self._this, {}

    def get(self, obj_id: Any, inputs: tuple, compute: Callable[[], T]) -> T:
        hit = self._last.get(obj_id)
        value = hit[1] if hit is not None and _same(hit[0], inputs) else compute()
        self._this[obj_id] = (inputs, value)
        return value


class App:
    """Base class: subclasses set `name` and implement desired() (map entries), flows()
    (OpenFlow flows of the OVS fallback, controller/ovs/flows.py), or both.

    An app's life in the agent: each pass calls desired(view) (pure: no I/O), the
    reconciler applies what all apps want, then each app's upkeep(view, maps) runs;
    the OVS fallback then reconciles flows(view) in the br-int tables the app owns.
    Frames the datapath punts for one of the app's `punt_reasons` reach on_punt()
    in the punt reader thread (controller/punt.py).
    """

    name = "app"
    # NB kinds (and "local_port") whose changes touch the app's entries; None: every change
    depends: tuple[str, ...] | None = None
    maps: tuple[str, ...] = ()  # every map the app owns entries of (stale ones there get removed)
    punt_reasons: tuple[int, ...] = ()  # enum dfxdp_punt_reason values this app answers
    # maps of its service the datapath writes itself (learned entries, conntrack, counters): never
    # audited, so nothing the datapath put there is removed; entries the app yields there are its own
    datapath_maps: tuple[str, ...] = ()
    tables: tuple[int, ...] = ()  # br-int tables the app owns whole (stale flows there get removed)
    flow_cookie = 0  # the app's id in the top 16 bits of its flows' cookies (1..65535 when it owns tables)

    def desired(self, view: LocalView) -> Iterable[Entry]:
        return ()

    # --- scopes (controller/desired.py): an app derives its entries per scope; a pass after
    # events derives again only the scopes they touch. The default: one scope, the whole app,
    # derived again whenever a kind in `depends` changed.
    def scopes(self, view: LocalView) -> Iterable[Hashable]:
        """Every scope that may have entries (a full pass derives them all)."""
        return (WHOLE,)

    def scope_entries(self, view: LocalView, scope: Hashable) -> Iterable[Entry]:
        """The entries of one scope: pure, like desired()."""
        return self.desired(view)

    def affected(self, view: LocalView, change: "Change") -> Iterable[Hashable]:
        """The scopes one change touches (`view` is the view after it)."""
        return (WHOLE,) if self.depends is None or change.kind in self.depends else ()

    def flows(self, view: LocalView) -> Iterable:
        return ()

    def upkeep(self, view: LocalView, maps: Mapping[str, "Map"]) -> None:
        """After this pass' entries are in the maps: what the app must do beyond
        declaring entries (end flows its new rules refuse, sweep what expired).
        `maps` are the pipeline's maps by name; the default does nothing."""

    def on_packet_in(self, view: LocalView, port_id: str | None, frame: bytes) -> bool:
        """A frame one of the app's flows sent to the controller from local port `port_id`
        (None: from another br-int port, the tunnel or the external NIC) (os-ken's thread; `view` is the last pass'). True: what the app wants changed, run a pass."""
        return False

    def fallback_upkeep(self, view: LocalView) -> None:
        """After the OVS fallback reconciled the flows on a connected br-int (only where it runs):
        e.g. send queries, whose answers come back as packet-ins."""

    def snat_zones(self) -> dict[str, int]:
        """Router id -> the OVS conntrack zone where this chassis SNATs for it (the sessions metric)."""
        return {}

    def chassis_facts(self, view: LocalView) -> dict:
        """What this chassis publishes in its NB record for the other chassis (e.g. IGMP groups)."""
        return {}

    def on_punt(self, packet: "PuntedPacket") -> None:
        """A punted frame for one of `punt_reasons`:
        answer with packet.reply(frame). Runs in the punt reader thread, beside the
        agent's passes: read packet.view (the last pass), keep no state a pass writes."""


class ScopedApp(App):
    """An app whose entries are those of many small scopes (a port, a network, a router):
    it implements scopes(), scope_entries() and affected(); desired() is their union."""

    def desired(self, view: LocalView) -> Iterable[Entry]:
        for scope in self.scopes(view):
            yield from self.scope_entries(view, scope)
