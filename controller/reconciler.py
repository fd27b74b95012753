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
        self._known: dict[str, dict[bytes, bytes]] = {name: {} for name in self.datapath_written}
        self._audited_at: float | None = None  # never: the first pass reads every owned map
        self._encoded: dict[int, tuple[Entry, bytes, bytes]] = {}

    def desired_bytes(self, entries: Iterable[Entry]) -> dict[str, dict[bytes, bytes]]:
        desired: dict[str, dict[bytes, bytes]] = {name: {} for name in self.managed + self.datapath_written}
        # An app that hands out the same Entry objects again (apps/base.py Memo) is not encoded
        # again: keyed by id(), safe because this dict keeps last pass' entries alive.
        encoded: dict[int, tuple[Entry, bytes, bytes]] = {}
        for entry in entries:
            hit = self._encoded.get(id(entry))
            if hit is None or hit[0] is not entry:
                want = desired.get(entry.map)
                if want is None:  # before any write: a bad pass changes nothing
                    raise ValueError(f"an entry for map {entry.map}, which no app declares")
                m = self.maps[entry.map]
                hit = (entry, m.encode_key(entry.key), m.encode_value(entry.value))
            encoded[id(entry)] = hit
            desired[entry.map][hit[1]] = hit[2]
        self._encoded = encoded
        for name in self.managed:
            if self.maps[name].is_array:
                desired[name] = _in_use(desired[name])
        return desired

    def _actual(self, audit: bool, result: ReconcileResult) -> dict[str, dict[bytes, bytes]]:
        """What the maps hold: read back on an audit, else what the last pass left (kept up
        to date entry by entry as the kernel accepts them, so it is updated in place)."""
        if audit or self._audited_at is None or time.monotonic() - self._audited_at >= self.audit_interval:
            result.audited = True
            self._audited_at = time.monotonic()
            for name in self.managed:
                items = self.maps[name].raw_items()
                self._known[name] = _in_use(items) if self.maps[name].is_array else items
        return self._known

    def apply(self, entries: Iterable[Entry], audit: bool = False) -> ReconcileResult:
        started = time.monotonic()
        result = ReconcileResult()
        desired = self.desired_bytes(entries)
        actual = self._actual(audit, result)
        # Phase 1: add and update everywhere.
        for name, want in desired.items():
            have = actual[name]
            changed = {key: value for key, value in want.items() if have.get(key) != value}
            for key in self._batched(result, "write", name, list(changed), list(changed.values())):
                have[key] = changed[key]
        # Phase 2: only then remove what nobody wants any more.
        for name, want in desired.items():
            have = actual[name]
            stale = [key for key in have if key not in want]
            # an ARRAY slot cannot be deleted: it is written back to zero
            zeros = [bytes(len(have[key])) for key in stale] if self.maps[name].is_array else None
            for key in self._batched(result, "remove", name, stale, zeros):
                del have[key]
        # failed writes and removals stay as they were in self._known: the next pass retries them
        result.duration = time.monotonic() - started
        return result

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
