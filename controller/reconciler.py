"""Bring the datapath maps to what the apps want.

Desired and actual entries are compared as raw bytes, encoded with the map's
own key/value types (its BTF, the structs of maps/*.h). New and changed
entries are written first, stale ones removed last, so a packet never meets a
state with less than both the old and the new configuration allow (a port that
moves is reachable throughout; nothing vanishes before its replacement is in).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Protocol

from .apps.base import Entry

log = logging.getLogger(__name__)


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

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


class Reconciler:
    def __init__(self, maps: Mapping[str, MapLike], managed: Iterable[str]):
        self.maps = maps
        self.managed = sorted(set(managed))  # maps whose every entry belongs to the apps

    def desired_bytes(self, entries: Iterable[Entry]) -> dict[str, dict[bytes, bytes]]:
        desired: dict[str, dict[bytes, bytes]] = {name: {} for name in self.managed}
        for entry in entries:
            m = self.maps[entry.map]
            desired.setdefault(entry.map, {})[m.encode_key(entry.key)] = m.encode_value(entry.value)
        return desired

    def apply(self, entries: Iterable[Entry]) -> ReconcileResult:
        started = time.monotonic()
        result = ReconcileResult()
        desired = self.desired_bytes(entries)
        actual = {name: self.maps[name].raw_items() for name in desired}
        # Phase 1: add and update everywhere.
        for name, want in desired.items():
            have = actual[name]
            for key, value in want.items():
                if have.get(key) != value:
                    self._try(result, "write", name, lambda: self.maps[name].update(key, value))
        # Phase 2: only then remove what nobody wants any more.
        for name, want in desired.items():
            for key in actual[name].keys() - want.keys():
                self._try(result, "remove", name, lambda: self.maps[name].delete(key))
        result.duration = time.monotonic() - started
        return result

    @staticmethod
    def _try(result: ReconcileResult, action: str, name: str, op) -> None:
        try:
            op()
        except OSError as exc:  # a full map, a vanished interface: report, keep going, retry next run
            result.errors.append(f"{action} in {name}: {exc}")
            log.warning("reconcile: %s in %s failed: %s", action, name, exc)
            return
        if action == "write":
            result.written += 1
        else:
            result.removed += 1
