"""Every NB kind, declared once: its model, where the API serves it, its CLI name, which
chassis need it (selective topology) and the indexes of the agent's local view.

What follows from the list, so that adding a kind is its model and one line in KINDS:
- the NB service validates documents of the kind with its model (dfxdp/nb/service.py);
- the API serves its collection (list, create, show, update, delete, filters, fields,
  pagination, /openapi.json) under its API (dfxdp/api/app.py);
- the CLI has `dfxdp <cli> list|show|create|set|delete` (dfxdp/cli/resources.py);
- every agent's cache keeps the documents its relation says the chassis needs
  (controller/cache.py), and the local view holds them as `view.<view>`, with the
  kind's indexes behind `view.find(kind, index, value)` (controller/apps/base.py).
Rules beyond the model's fields (what a create also writes, what a delete refuses) are
the kind's family's, in dfxdp/nb/families/.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol

from . import model
from .index import FLOATINGIP_OWNER, ROUTER_GATEWAY, ROUTER_INTERFACE

NEUTRON, OCTAVIA = "neutron", "octavia"
# where each API's collections are (Octavia's also under /v2.0/lbaas: dfxdp/api/errors.py)
API_PREFIX = {NEUTRON: "/v2.0", OCTAVIA: "/v2/lbaas"}
ROUTER_PORT_OWNERS = (ROUTER_INTERFACE, ROUTER_GATEWAY)


class Interest(Protocol):
    """What a chassis' bound ports reach (controller/cache.py computes it)."""

    local_ports: frozenset
    networks: frozenset
    routers: frozenset
    security_groups: frozenset


# A kind's relation: whether a chassis named `chassis`, with that interest, needs the document.
Relation = Callable[[dict, str, Interest], bool]


def everywhere(doc: dict, chassis: str, interest: Interest) -> bool:
    """Few objects, or ones whose relevance hangs on others: every chassis keeps them all."""
    return True


def on_networks(field: str) -> Relation:
    """Objects whose `field` names a network the chassis serves."""
    return lambda doc, chassis, interest: doc.get(field) in interest.networks


def nowhere(doc: dict, chassis: str, interest: Interest) -> bool:
    """Objects of the API alone (subnet pools): no datapath reads them."""
    return False


def _network(doc: dict, chassis: str, interest: Interest) -> bool:
    return doc["id"] in interest.networks


def _port(doc: dict, chassis: str, interest: Interest) -> bool:
    """Bound here, on a network served here, or an interface of a router reachable from here."""
    return (doc.get("binding:host_id") == chassis or doc.get("network_id") in interest.networks or
            (doc.get("device_owner") in ROUTER_PORT_OWNERS and doc.get("device_id") in interest.routers))


def _router(doc: dict, chassis: str, interest: Interest) -> bool:
    return doc["id"] in interest.routers


def _floatingip(doc: dict, chassis: str, interest: Interest) -> bool:
    """A local port's, or one of a router served here: a load balancer's VIP port is bound
    nowhere, and a chassis of its router may host its floating IP (docs/load-balancer.md)."""
    return doc.get("port_id") in interest.local_ports or doc.get("router_id") in interest.routers


def _security_group(doc: dict, chassis: str, interest: Interest) -> bool:
    return doc["id"] in interest.security_groups


def _rule(doc: dict, chassis: str, interest: Interest) -> bool:
    # every rule of an interesting group, including those that pull in a remote group
    return doc.get("security_group_id") in interest.security_groups


@dataclass(frozen=True)
class Index:
    """A lookup the apps make often: the keys a document is found under (none, one or several)."""

    name: str
    keys: Callable[[dict], Iterable[Any]]


def field_index(name: str, field: str) -> Index:
    """Documents by the value of one field."""
    return Index(name, lambda doc: (doc.get(field),))


@dataclass(frozen=True)
class Kind:
    name: str                     # key segment: /dfxdp/nb/<name>/<id>; the JSON envelope of one object
    model: type[model.Resource]
    view: str                     # the local view's attribute holding them (id -> document)
    relation: Relation            # which chassis need a document (selective topology)
    collection: str | None = None  # API path segment; None: not served as a collection
    api: str = NEUTRON
    parent: tuple[str, str] | None = None  # served under one parent: (its kind, the field naming it)
    cli: str | None = None        # `dfxdp <cli> …`; None: no command group
    columns: tuple[str, ...] = ("id", "name")  # what a CLI table shows
    indexes: tuple[Index, ...] = ()

    @property
    def plural(self) -> str:
        """The JSON envelope of a list."""
        return self.name + "s"

    @property
    def path(self) -> str | None:
        """The collection's URL path (a nested one's: under its parent's, see dfxdp/api/app.py)."""
        return f"{API_PREFIX[self.api]}/{self.collection}" if self.collection else None

    def index(self, name: str) -> Index:
        return next(index for index in self.indexes if index.name == name)


def _owned_by(port: dict) -> tuple:
    return ((port.get("device_owner"), port.get("device_id")),)


SG_BLOCK_BITS = 8  # security groups compile remote members per /24 block (controller/sg_compiler.py)


def _group_blocks(port: dict) -> set[tuple[str, int]]:
    """(group, /24 block) for each of the port's groups and IPv4 blocks: a new member of a
    remote group re-derives its own block only."""
    groups = port.get("security_groups")
    if not groups:
        return set()
    blocks = set()
    for fixed in port.get("fixed_ips") or ():
        address = fixed["ip_address"]
        if ":" not in address:  # IPv4 (NB holds validated addresses)
            a, b, c, d = (int(part) for part in address.split("."))
            blocks.add(((a << 24) | (b << 16) | (c << 8) | d) >> SG_BLOCK_BITS)
    return {(group, block) for group in groups for block in blocks}


KINDS: list[Kind] = [
    Kind("network", model.Network, "networks", _network, "networks", cli="network",
         columns=("id", "name", "provider:segmentation_id", "router:external", "subnets"),
         indexes=(field_index("key", "key"), field_index("external", "router:external"))),
    Kind("subnet", model.Subnet, "subnets", on_networks("network_id"), "subnets", cli="subnet",
         columns=("id", "name", "network_id", "cidr", "gateway_ip"),
         indexes=(field_index("network", "network_id"),)),
    Kind("subnetpool", model.SubnetPool, "subnetpools", nowhere, "subnetpools"),
    Kind("address_scope", model.AddressScope, "address_scopes", nowhere, "address-scopes", cli="address-scope",
         columns=("id", "name", "ip_version", "shared", "project_id")),
    Kind("port", model.Port, "ports", _port, "ports", cli="port",
         columns=("id", "name", "network_id", "mac_address", "fixed_ips", "binding:host_id", "status"),
         indexes=(field_index("network", "network_id"), field_index("owner", "device_owner"),
                  Index("device", _owned_by), field_index("device_id", "device_id"),
                  field_index("host", "binding:host_id"),
                  Index("security_group", lambda port: port.get("security_groups") or ()),
                  Index("security_group_block", _group_blocks))),
    Kind("router", model.Router, "routers", _router, "routers", cli="router",
         columns=("id", "name", "external_gateway_info", "routes")),
    Kind("security_group", model.SecurityGroup, "security_groups", _security_group, "security-groups",
         cli="security-group", columns=("id", "name", "description")),
    Kind("security_group_rule", model.SecurityGroupRule, "security_group_rules", _rule, "security-group-rules",
         cli="security-group-rule", columns=("id", "security_group_id", "direction", "protocol", "port_range_min",
                                             "port_range_max", "remote_ip_prefix", "remote_group_id")),
    Kind("floatingip", model.FloatingIP, "floatingips", _floatingip, "floatingips", cli="floatingip",
         columns=("id", "floating_ip_address", "fixed_ip_address", "port_id", "router_id")),
    # Octavia's: few, and their relevance hangs on each other (a member knows only its pool), so
    # every chassis keeps them all; the LB app skips load balancers whose VIP network is out of view
    Kind("loadbalancer", model.LoadBalancer, "loadbalancers", everywhere, "loadbalancers", OCTAVIA,
         cli="loadbalancer", columns=("id", "name", "vip_address", "provisioning_status", "operating_status")),
    Kind("listener", model.Listener, "listeners", everywhere, "listeners", OCTAVIA, cli="listener",
         columns=("id", "name", "protocol", "protocol_port", "default_pool_id"),
         indexes=(field_index("loadbalancer", "loadbalancer_id"),)),
    Kind("pool", model.Pool, "pools", everywhere, "pools", OCTAVIA, cli="pool",
         columns=("id", "name", "protocol", "lb_algorithm", "members")),
    Kind("member", model.Member, "members", everywhere, "members", OCTAVIA, parent=("pool", "pool_id"),
         indexes=(field_index("pool", "pool_id"),)),
    Kind("healthmonitor", model.HealthMonitor, "healthmonitors", everywhere, "healthmonitors", OCTAVIA,
         cli="healthmonitor", columns=("id", "name", "pool_id", "type", "delay", "timeout", "max_retries")),
    # chassis are few and every agent needs every tunnel endpoint; the API shows them as agents
    # (dfxdp/api/agents.py), keyed by name (a chassis' id is its name)
    Kind("chassis", model.Chassis, "chassis_by_name", everywhere),
]

# kept with KINDS by register()
MODELS: dict[str, type[model.Resource]] = {}  # kind name -> model
BY_NAME: dict[str, Kind] = {}
BY_VIEW: dict[str, Kind] = {}  # the local view's attribute -> kind


def register(kind: Kind) -> None:
    """List a kind. In this tree every kind is a line of KINDS; a kind from outside it (a
    test's throwaway one, tests/example_service) is registered before the API, the CLI or
    an agent is built, which read the list then."""
    if kind.name in BY_NAME or kind.view in BY_VIEW:
        raise ValueError(f"NB kind {kind.name} (view {kind.view}) is registered already")
    if kind not in KINDS:
        KINDS.append(kind)
    BY_NAME[kind.name], BY_VIEW[kind.view], MODELS[kind.name] = kind, kind, kind.model


def unregister(kind: Kind) -> None:
    KINDS.remove(kind)
    del BY_NAME[kind.name], BY_VIEW[kind.view], MODELS[kind.name]


for _kind in list(KINDS):
    register(_kind)
