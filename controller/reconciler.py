"""Bring the datapath maps to what the apps want.

Desired and actual entries are compared as raw bytes, encoded with the map's
own key/value types (its BTF, the structs of maps/*.h). New and changed
entries are written first, stale ones removed last, so a packet never meets a
state with less than both the old and the new configuration allow (a port that
moves is reachable throughout; nothing vanishes before its replacement is in).
Within the write phase, maps are written in the order the apps declare them:
a map that others refer to (tunnel endpoints, security policies) comes first.

The agent is the only writer of these maps, so after the first pass the
reconciler compares against what it knows it left there instead of reading
every entry back from the kernel each pass. An audit (a full read) runs on
the first pass and then every `audit_interval` seconds, and repairs anything
changed behind its back (a hand-edited map, a pin replaced by another tool).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol

from .apps.base import Entry

log = logging.getLogger(__name__)

AUDIT_INTERVAL = 60.0


class MapLike(Protocol):
    name: str

    def raw_items(self) -> dict[bytes, bytes]: ...
    def encode_key(self, key) -> bytes: ...
    def encode_value(self, value) -> bytes: ...
    def update(self, key, value, flags: int = 0) -> None: ...
    def delete(self, key) -> bool: ...


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
    def __init__(self, maps: Mapping[str, MapLike], managed: Iterable[str], audit_interval: float = AUDIT_INTERVAL):
        self.maps = maps
        self.managed = list(dict.fromkeys(managed))  # maps whose every entry belongs to the apps, in write order
        self.audit_interval = audit_interval
        self._known: dict[str, dict[bytes, bytes]] | None = None  # what the maps hold after our last pass
        self._audited_at = 0.0
        self._encoded: dict[int, tuple[Entry, bytes, bytes]] = {}

    def desired_bytes(self, entries: Iterable[Entry]) -> dict[str, dict[bytes, bytes]]:
        desired: dict[str, dict[bytes, bytes]] = {name: {} for name in self.managed}
        # An app that hands out the same Entry objects again (apps/base.py Memo) is not encoded
        # again: keyed by id(), safe because this dict keeps last pass' entries alive.
        encoded: dict[int, tuple[Entry, bytes, bytes]] = {}
        for entry in entries:
            hit = self._encoded.get(id(entry))
            if hit is None or hit[0] is not entry:
                m = self.maps[entry.map]
                hit = (entry, m.encode_key(entry.key), m.encode_value(entry.value))
            encoded[id(entry)] = hit
            desired.setdefault(entry.map, {})[hit[1]] = hit[2]
        self._encoded = encoded
        return desired

    def _actual(self, names: Iterable[str], audit: bool, result: ReconcileResult) -> dict[str, dict[bytes, bytes]]:
        known = self._known or {}
        if audit or any(name not in known for name in names) or \
                time.monotonic() - self._audited_at >= self.audit_interval:
            result.audited = True
            self._audited_at = time.monotonic()
            return {name: self.maps[name].raw_items() for name in names}
        return {name: dict(known[name]) for name in names}

    def apply(self, entries: Iterable[Entry], audit: bool = False) -> ReconcileResult:
        started = time.monotonic()
        result = ReconcileResult()
        desired = self.desired_bytes(entries)
        actual = self._actual(desired, audit, result)
        # Phase 1: add and update everywhere.
        for name, want in desired.items():
            have = actual[name]
            for key, value in want.items():
                if have.get(key) != value and self._try(result, "write", name, lambda: self.maps[name].update(key, value)):
                    have[key] = value
        # Phase 2: only then remove what nobody wants any more.
        for name, want in desired.items():
            have = actual[name]
            for key in have.keys() - want.keys():
                if self._try(result, "remove", name, lambda: self.maps[name].delete(key)):
                    del have[key]
        self._known = actual  # failed writes and removals stay as they were: the next pass retries them
        result.duration = time.monotonic() - started
        return result

    @staticmethod
    def _try(result: ReconcileResult, action: str, name: str, op) -> bool:
        try:
            op()
        except OSError as exc:  # a full map, a vanished interface: report, keep going, retry next run
            result.errors.append(f"{action} in {name}: {exc}")
            log.warning("reconcile: %s in %s failed: %s", action, name, exc)
            return False
        if action == "write":
            result.written += 1
        else:
            result.removed += 1
        return True
