"""Desired OpenFlow flows and the reconciler that brings a bridge to them.

An app that owns OpenFlow tables yields `Flow`s from the LocalView, as it yields
map entries. Every flow carries a cookie: the owning app's 16-bit id in the top
bits and a 48-bit digest of the flow (table, priority, match, actions) below it.
Two flows with the same cookie are the same flow, so the reconciler never needs
to compare matches and actions as OVS prints them back: it adds the desired
cookies the bridge lacks, then deletes (by exact cookie) what the bridge holds in
the owned tables that nobody wants any more. A changed flow is added first (it
replaces the old one with the same match and priority in place) and its old
cookie deleted after, which then matches nothing: no frame meets a gap.

The agent is the bridge's only controller, so after a full dump (at the first
pass, after every (re)connection of the switch, and every `audit_interval`
seconds) the reconciler trusts what it wrote. OVS itself cannot hold two flows
with one match and priority in a table, and a cookie already there is never
added again: no duplicates, across agent restarts too.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol

log = logging.getLogger(__name__)

AUDIT_INTERVAL = 60.0
DIGEST_BITS = 48
DIGEST_MASK = (1 << DIGEST_BITS) - 1
ALL_ONES = (1 << 64) - 1


@dataclass(frozen=True)
class Flow:
    """One desired flow. `match`: OXM fields by os-ken name (in_port, eth_dst, metadata,
    tunnel_id, ...), a value or a (value, mask) pair. `actions`: tuples built by the
    helpers below, applied in order; `goto` and `metadata` become instructions."""

    table: int
    priority: int
    match: tuple[tuple[str, Any], ...] = ()
    actions: tuple[tuple, ...] = ()

    @staticmethod
    def of(table: int, priority: int, match: Mapping[str, Any] | None = None, actions: Iterable[tuple] = ()) -> "Flow":
        return Flow(table, priority, tuple(sorted((match or {}).items())), tuple(actions))

    @property
    def key(self) -> tuple:
        """What OVS keeps one flow per: two desired flows with one key conflict."""
        return (self.table, self.priority, self.match)

    def cookie(self, owner: int) -> int:
        digest = hashlib.sha256(repr((self.table, self.priority, self.match, self.actions)).encode()).digest()
        return (owner << DIGEST_BITS) | (int.from_bytes(digest[:8], "big") & DIGEST_MASK)


def output(port: int) -> tuple:
    return ("output", port)


def set_field(name: str, value: Any) -> tuple:
    return ("set_field", name, value)


def to_controller() -> tuple:
    """A copy of the whole frame to the agent (packet-in; the owning app's on_packet_in)."""
    return ("controller",)


def write_metadata(value: int) -> tuple:
    return ("metadata", value)


def goto(table: int) -> tuple:
    return ("goto", table)


def output_reg(register: str) -> tuple:
    """Output to the OpenFlow port held in a register (e.g. "reg6")."""
    return ("output_reg", register)


def dec_ttl() -> tuple:
    """IPv4 TTL - 1 (a routing hop); OVS drops what reaches 0."""
    return ("dec_ttl",)


def resubmit(table: int) -> tuple:
    """Run `table` on the frame as it is now and come back (OVS's resubmit): unlike goto,
    the actions after it still apply, and the table may be an earlier one."""
    return ("resubmit", table)


def conntrack(zone: int, table: int, commit: bool = False, snat_to: str | None = None) -> tuple:
    """Through OVS's connection tracker in `zone`, then on in `table` (recirculated: nothing after
    it in this action list). `snat_to`: commit with the source translated to that address;
    without it, a tracked connection's translation is undone on its replies (OVS's `nat`)."""
    return ("ct", commit, zone, table, snat_to)


DROP: tuple[tuple, ...] = ()  # no actions: the flow drops (and counts) what it matches


@dataclass(frozen=True)
class Installed:
    """A flow as the bridge reports it: enough to delete it exactly."""

    cookie: int
    table: int


class Switch(Protocol):
    """The bridge as the reconciler drives it (controller/ovs/ofctl.py, or a fake in tests)."""

    def dump_flows(self) -> list[Installed]: ...
    def add_flows(self, flows: list[tuple[int, Flow]]) -> list[str]: ...      # -> errors
    def delete_flows(self, flows: list[Installed]) -> list[str]: ...          # -> errors


@dataclass
class FlowResult:
    added: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    audited: bool = False
    per_table: dict[int, int] = field(default_factory=dict)  # flows in the owned tables after the pass


@dataclass
class Owner:
    """An app's claim on the bridge: its cookie id and the tables it owns whole."""

    name: str
    cookie: int
    tables: tuple[int, ...]


class FlowReconciler:
    def __init__(self, owners: Iterable[Owner], audit_interval: float = AUDIT_INTERVAL):
        self.owners = list(owners)
        cookies = [o.cookie for o in self.owners]
        tables = [t for o in self.owners for t in o.tables]
        if len(set(cookies)) != len(cookies) or len(set(tables)) != len(tables):
            raise ValueError(f"flow owners overlap: cookies {cookies}, tables {tables}")
        if any(not 0 < c < (1 << 16) for c in cookies):
            raise ValueError(f"flow owner cookies must be 1..65535: {cookies}")
        self._tables = set(tables)
        self._cookies = set(cookies)
        self.audit_interval = audit_interval
        self._known: dict[int, int] | None = None  # cookie -> table, what the bridge holds after our last pass
        self._stale = True  # set from os-ken's thread on a (re)connection: dump at the next pass
        self._audited_at = 0.0

    def forget(self) -> None:
        """The bridge may have changed behind our back (a new connection, an OVS restart): dump next time."""
        self._stale = True

    def desired(self, flows_by_owner: Mapping[str, Iterable[Flow]], errors: list[str]) -> dict[int, Flow]:
        """cookie -> flow; a flow outside its owner's tables or conflicting with another is refused."""
        wanted: dict[int, Flow] = {}
        keys: dict[tuple, int] = {}
        for owner in self.owners:
            for flow in flows_by_owner.get(owner.name, ()):
                if flow.table not in owner.tables:
                    errors.append(f"{owner.name}: flow in table {flow.table}, which it does not own")
                    continue
                cookie = flow.cookie(owner.cookie)
                other = keys.setdefault(flow.key, cookie)
                if other != cookie:
                    errors.append(f"{owner.name}: two flows with one match and priority in table {flow.table}: "
                                  f"{wanted[other]} and {flow}")
                    continue
                wanted[cookie] = flow
        return wanted

    def _owned(self, flow: Installed) -> bool:
        return flow.table in self._tables or (flow.cookie >> DIGEST_BITS) in self._cookies

    def apply(self, switch: Switch, flows_by_owner: Mapping[str, Iterable[Flow]]) -> FlowResult:
        result = FlowResult()
        wanted = self.desired(flows_by_owner, result.errors)
        if self._stale or self._known is None or time.monotonic() - self._audited_at >= self.audit_interval:
            self._stale = False  # before the dump: a forget() during this pass holds for the next one
            result.audited = True
            self._audited_at = time.monotonic()
            actual = {}
            for flow in switch.dump_flows():
                if self._owned(flow):
                    actual.setdefault(flow.cookie, flow.table)
        else:
            actual = dict(self._known)
        adds = [(cookie, flow) for cookie, flow in wanted.items() if cookie not in actual]
        # Phase 1: add. Phase 2, only then: delete what nobody wants (by exact cookie).
        add_errors = switch.add_flows(adds) if adds else []
        stale = [Installed(cookie, table) for cookie, table in actual.items() if cookie not in wanted]
        delete_errors = switch.delete_flows(stale) if stale else []
        result.added, result.removed = len(adds), len(stale)
        result.errors += add_errors + delete_errors
        for cookie, flow in adds:
            actual[cookie] = flow.table
        for flow in stale:
            actual.pop(flow.cookie, None)
        # After a refused flow mod we do not know exactly what the bridge holds: dump next pass.
        self._known = None if (add_errors or delete_errors) else actual
        result.per_table = {table: 0 for table in sorted(self._tables)}
        for table in actual.values():
            result.per_table[table] = result.per_table.get(table, 0) + 1
        return result
