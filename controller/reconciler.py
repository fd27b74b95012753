"""Bring the datapath maps to what the apps want.

Desired and actual entries are compared as raw bytes, encoded with the map's
own key/value types (its BTF, the structs of maps/*.h). New and changed
entries are written first, stale ones removed last, so a packet never meets a
state with less than both the old and the new configuration allow (a port that
moves is reachable throughout; nothing vanishes before its replacement is in).
Within each phase, maps are taken in the order the apps declare them: a map
that others refer to (tunnel endpoints, security policies) comes first.

Each map's changes go to the kernel as one batch (BPF_MAP_UPDATE_BATCH, then
BPF_MAP_DELETE_BATCH), in the order the apps yielded the entries; a batch that
stops at a failing entry is reported for that entry and resumed after it. An
ARRAY map has no deletion: its stale slots are written back to zero, and a
zero slot counts as empty.

Two kinds of maps:
- owned: every entry belongs to the apps. The agent is their only writer, so
  after the first pass the reconciler compares against what it knows it left
  there instead of reading every entry back each pass. An audit (a full read)
  runs on the first pass and then every `audit_interval` seconds, and repairs
  anything changed behind its back (a hand-edited map, a pin replaced by
  another tool): entries nobody wants are removed.
- datapath-written (learned neighbours, conntrack, counters): the datapath
  adds and changes entries itself. They are never read back nor audited; the
  reconciler writes only the entries apps ask for and removes only those it
  wrote. What it wrote the datapath may take over (an LRU eviction, a learned
  MAC); a restarted agent leaves what its predecessor wrote to the datapath.
"""
from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol

from dfxdp.datapath import fastpath
from dfxdp.datapath.libbpf import BatchError

from .apps.base import Entry

log = logging.getLogger(__name__)

AUDIT_INTERVAL = 60.0


class MapLike(Protocol):
    name: str
    percpu: bool    # one value per CPU: counters, never app state
    is_array: bool  # every slot exists: a stale one is zeroed, not deleted

    def raw_items(self) -> dict[bytes, bytes]: ...
    def encode_key(self, key) -> bytes: ...
    def encode_value(self, value) -> bytes: ...
    # concatenated encodings, applied in order; BatchError at the first entry that fails
    def update_batch_raw(self, keys: bytes, values: bytes) -> None: ...
    def delete_batch_raw(self, keys: bytes) -> None: ...


@dataclass
class ReconcileResult:
    written: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0
    audited: bool = False  # the maps were read back this pass

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


class Reconciler:
    def __init__(self, maps: Mapping[str, MapLike], managed: Iterable[str], datapath_written: Iterable[str] = (),
                 audit_interval: float = AUDIT_INTERVAL):
        self.maps = maps
        self.managed = list(dict.fromkeys(managed))  # maps whose every entry belongs to the apps, in write order
        self.datapath_written = list(dict.fromkeys(datapath_written))
        both = set(self.managed) & set(self.datapath_written)
        if both:
            raise ValueError(f"maps declared both app-owned and datapath-written: {', '.join(sorted(both))}")
        for name in self.managed + self.datapath_written:
            if name not in maps:
                raise ValueError(f"map {name} is declared by an app but not in the datapath")
        percpu = [name for name in self.managed if maps[name].percpu]
        if percpu:  # their read-back holds one value per CPU: never equal to what an app wants
            raise ValueError(f"per-CPU maps cannot be app-owned (declare them datapath-written): {', '.join(percpu)}")
        self.audit_interval = audit_interval
        self.owned = {*self.managed, *self.datapath_written}
        self._known: dict[str, dict[bytes, bytes]] = {name: {} for name in self.datapath_written}
        self._audited_at: float | None = None  # never: the first pass reads every owned map
        # keys whose last write or removal failed, by map: a pass that compares only the keys
        # its events touched tries these again too
        self._failed: dict[str, set[bytes]] = {}

    def encode(self, entry: Entry) -> tuple[bytes, bytes]:
        """An entry's key and value as its map stores them."""
        m = self.maps.get(entry.map)
        if m is None or entry.map not in self.owned:  # before any write: a bad pass changes nothing
            raise ValueError(f"an entry for map {entry.map}, which no app declares")
        return m.encode_key(entry.key), m.encode_value(entry.value)

    def desired_bytes(self, entries: Iterable[Entry]) -> dict[str, dict[bytes, bytes]]:
        """Entries by map as bytes; where several entries share a key, the first one holds it
        (as controller/desired.py decides it)."""
        desired: dict[str, dict[bytes, bytes]] = {name: {} for name in self.managed + self.datapath_written}
        for entry in entries:
            key, value = self.encode(entry)
            desired[entry.map].setdefault(key, value)
        return desired

    def _actual(self, audit: bool, result: ReconcileResult) -> dict[str, dict[bytes, bytes]]:
        """What the maps hold: read back on an audit, else what the last pass left (kept up
        to date entry by entry as the kernel accepts them, so it is updated in place)."""
        if audit or self._audited_at is None or time.monotonic() - self._audited_at >= self.audit_interval:
            result.audited = True
            for name in self.managed:
                items = self.maps[name].raw_items()
                self._known[name] = _in_use(items) if self.maps[name].is_array else items
        return self._known

    def apply(self, entries: Iterable[Entry], audit: bool = False) -> ReconcileResult:
        """Bring the maps to exactly these entries."""
        return self.apply_wanted(self.desired_bytes(entries), audit=audit)

    def apply_wanted(self, wanted: Mapping[str, Mapping[bytes, bytes]], touched: Mapping[str, set[bytes]] | None = None,
                     audit: bool = False, steps: Iterable[set[str]] | None = None) -> ReconcileResult:
        """Bring the maps to `wanted` (map -> key -> value). With `touched` (map -> keys), only
        those keys (and those that failed last time) can differ from what the maps hold: only
        they are compared, unless an audit is due, which compares everything. `steps` (without
        `touched`): `wanted` is being filled, and each step names maps complete so far, written
        then (in the maps' order), before the next step fills more (DesiredState.rebuild_steps)."""
        started = time.monotonic()
        result = ReconcileResult()
        actual = self._actual(audit, result)
        if result.audited or touched is None:
            keys = None
        else:
            keys = {name: touched.get(name, set()) | self._failed.get(name, set())
                    for name in self.managed + self.datapath_written}
        self._failed = {}
        order = self.managed + self.datapath_written
        # Phase 1: add and update everywhere.
        for step in ([order] if steps is None or keys is not None else steps):
            for name in [name for name in order if name in step]:
                self._write(result, name, wanted.get(name, {}), actual.setdefault(name, {}), keys)
        if steps is not None and keys is None:  # the maps no step named: stale entries only, below
            for name in order:
                actual.setdefault(name, {})
        # Phase 2: only then remove what nobody wants any more.
        for name in order:
            want, have = wanted.get(name, {}), actual[name]
            candidates = have if keys is None else [key for key in keys[name] if key in have]
            stale = [key for key in candidates if key not in want or self.maps[name].is_array and not any(want[key])]
            # an ARRAY slot cannot be deleted: it is written back to zero
            zeros = [bytes(len(have[key])) for key in stale] if self.maps[name].is_array else None
            for key in self._batched(result, "remove", name, stale, zeros):
                del have[key]
        # failed writes and removals stay as they were in self._known: the next pass retries them
        if result.changed:  # flows' cached forwarding was decided on what was there before
            fastpath.invalidate(self.maps)
        if result.audited:  # the interval counts from the end: a long full pass is not followed by an audit
            self._audited_at = time.monotonic()
        result.duration = time.monotonic() - started
        return result

    def _write(self, result: ReconcileResult, name: str, want: Mapping[bytes, bytes], have: dict[bytes, bytes],
               keys: Mapping[str, set[bytes]] | None) -> None:
        """Phase 1 for one map: what is new or changed (of `keys` only, when given)."""
        if self.maps[name].is_array:
            want = _in_use(want) if keys is None else want
        if keys is None:
            changed = {key: value for key, value in want.items() if have.get(key) != value}
        else:
            changed = {key: want[key] for key in keys[name] if key in want and have.get(key) != want[key]}
        for key in self._batched(result, "write", name, list(changed), list(changed.values())):
            have[key] = changed[key]

    def _batched(self, result: ReconcileResult, action: str, name: str, keys: list[bytes],
                 values: list[bytes] | None) -> list[bytes]:
        """Write keys/values (or, values None, delete keys) in order, batched; returns the
        keys applied. A batch that fails at one entry has it reported and goes on after
        it: a full map or a vanished interface costs that entry, the next pass retries it."""
        if not keys:
            return []
        m, ks = self.maps[name], len(keys[0])
        key_bytes = memoryview(b"".join(keys))  # views: resuming after a failure copies nothing
        if values is None:
            def send(first: int) -> None:
                m.delete_batch_raw(key_bytes[first * ks:])
        else:
            value_bytes, vs = memoryview(b"".join(values)), len(values[0])

            def send(first: int) -> None:
                m.update_batch_raw(key_bytes[first * ks:], value_bytes[first * vs:])
        applied, first = [], 0
        while first < len(keys):
            try:
                send(first)
                applied.extend(keys[first:])
                break
            except BatchError as exc:
                failed = first + exc.done
                applied.extend(keys[first:failed])
                if values is None and exc.errno == errno.ENOENT:
                    applied.append(keys[failed])  # already gone: what we wanted
                else:
                    self._failed.setdefault(name, set()).add(keys[failed])
                    key, why = keys[failed].hex(), os.strerror(exc.errno)
                    result.errors.append(f"{action} in {name}, key {key}: {why}")
                    log.warning("reconcile: %s in %s failed for key %s: %s", action, name, key, why)
                first = failed + 1
        if action == "write":
            result.written += len(applied)
        else:
            result.removed += len(applied)
        return applied


def _in_use(slots: dict[bytes, bytes]) -> dict[bytes, bytes]:
    """An ARRAY map's slots but the zero ones: a zero slot is an empty one."""
    return {k: v for k, v in slots.items() if v.count(0) != len(v)}
