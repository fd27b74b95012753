"""Bring the datapath maps to what the apps want.

Desired and actual entries are compared as raw bytes, encoded with the map's
own key/value types (its BTF, the structs of maps/*.h); values are kept without
their trailing zero bytes (a DNS name's 256-byte buffer holds a few dozen) and
padded again as they are written. New and changed entries are written first,
stale ones removed last, so a packet never meets a state with less than both
the old and the new configuration allow (a port that moves is reachable
throughout; nothing vanishes before its replacement is in). Within each phase,
maps are taken in the order the apps declare them: a map that others refer to
(tunnel endpoints, security policies) comes first.

Each map's changes go to the kernel as one batch (BPF_MAP_UPDATE_BATCH, then
BPF_MAP_DELETE_BATCH), in the order the apps yielded the entries; a batch that
stops at a failing entry is reported for that entry and resumed after it. An
ARRAY map has no deletion: its stale slots are written back to zero, and a
zero slot counts as empty.

What the maps hold is not kept a second time: after a pass they hold what it
wanted, except the entries the kernel refused (`_off`: what those keys hold
instead). A pass after events is told the keys whose wanted value changed and
the value each had before (controller/desired.py); a full pass is handed a new
wanted state and compares it with the last one.

Two kinds of maps:
- owned: every entry belongs to the apps. The agent is their only writer, so
  after the first pass the reconciler compares against what it knows it left
  there instead of reading every entry back each pass. An audit (a full read,
  streamed a batch at a time) runs on the first pass and then every
  `audit_interval` seconds, and repairs anything changed behind its back (a
  hand-edited map, a pin replaced by another tool): entries nobody wants are
  removed. A restarted agent's first pass is such an audit: it writes only
  what differs from what its predecessor left pinned.
- datapath-written (learned neighbours, conntrack, counters): the datapath
  adds and changes entries itself. They are never read back nor audited; the
  reconciler writes only the entries apps ask for and removes only those it
  wrote. What it wrote the datapath may take over (an LRU eviction, a learned
  MAC); a restarted agent leaves what its predecessor wrote to the datapath.
"""
from __future__ import annotations

import errno
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Protocol

from dfxdp.datapath import fastpath
from dfxdp.datapath.libbpf import BatchError

from .apps.base import Entry

log = logging.getLogger(__name__)

AUDIT_INTERVAL = 60.0
BATCH = 4096  # entries a batch syscall takes
_NOTHING: Mapping = {}

Wanted = Mapping[str, Mapping[bytes, bytes]]  # map -> key -> value, as encode() gives them
# map -> key -> its wanted value before the pass changed it (None: it had none)
Touched = Mapping[str, Mapping[bytes, "bytes | None"]]


class MapLike(Protocol):
    name: str
    percpu: bool    # one value per CPU: counters, never app state
    is_array: bool  # every slot exists: a stale one is zeroed, not deleted
    # bytes of a value; values are kept without trailing zeros and padded to this. None: kept
    # whole (a map of arrays, whose values are the inner arrays)
    value_size: int | None

    def raw_iter(self) -> Iterator[tuple[bytes, bytes]]: ...
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


class _MapPass:
    """One map's comparison in one pass: what each key holds (`holds`: `overlay` where this
    pass knows better, else `lookup`), which keys to write and which are stale. A key this
    pass wrote or removed holds what the pass wants; one the kernel refused stays in
    `overlay` with what it still holds (the deviations the next pass retries)."""

    def __init__(self, name: str, m: MapLike, wanted: Wanted, off: Mapping[bytes, bytes | None]):
        self.name, self.m, self._wanted = name, m, wanted
        self.overlay = dict(off)  # key -> what it holds where that is not lookup(key)

    def lookup(self, key: bytes) -> bytes | None:
        """What a key holds as far as the last pass (or the read-back) knows. A method, not a
        stored bound method: that would be a cycle keeping every pass (and each key an audit
        read) alive until a full collection, which the frozen cache postpones for long."""
        raise NotImplementedError

    @property
    def want(self) -> Mapping[bytes, bytes]:
        """What the pass wants in this map (looked up each time: a full pass may add the map)."""
        return self._wanted.get(self.name, _NOTHING)

    def compare(self) -> Iterable[tuple[bytes, bytes]]:
        """(key, wanted value) not compared yet, of the keys that may differ."""
        raise NotImplementedError

    def stale_candidates(self) -> Iterable[bytes]:
        raise NotImplementedError

    def present(self, value: bytes | None) -> bool:
        """A value the map holds: an ARRAY's zero slot is an empty one."""
        return value is not None and (not self.m.is_array or value != b"")

    def holds(self, key: bytes) -> bytes | None:
        return self.overlay[key] if key in self.overlay else self.lookup(key)

    def writes(self) -> list[tuple[bytes, bytes]]:
        """New or changed entries not compared yet."""
        overlay, lookup, array = self.overlay, self.lookup, self.m.is_array
        if not overlay and not array:  # the common case, at C speed
            return [(k, v) for k, v in self.compare() if lookup(k) != v]
        present, holds = self.present, self.holds
        return [(k, v) for k, v in self.compare() if present(v) and holds(k) != v]

    def stale(self) -> list[bytes]:
        want, present, holds = self.want, self.present, self.holds
        if not self.overlay and not self.m.is_array:
            return [k for k in self.stale_candidates() if k not in want and self.lookup(k) is not None]
        return [k for k in self.stale_candidates() if present(holds(k)) and not present(want.get(k))]

    def settle(self, tried: list[bytes], failed: list[bytes]) -> None:
        """After a write or removal of `tried`: the `failed` keys still hold what they held."""
        held = {k: self.holds(k) for k in failed}
        if self.overlay:
            for k in tried:
                self.overlay.pop(k, None)
        self.overlay.update(held)

    def deviations(self) -> dict[bytes, bytes | None]:
        """After the pass: the keys whose content is not what `want` says (refused writes)."""
        norm, want = self._norm, self.want
        return {k: v for k, v in self.overlay.items() if norm(v) != norm(want.get(k))}

    def _norm(self, value: bytes | None) -> bytes | None:
        return value if self.present(value) else None


class _FullPass(_MapPass):
    """A new wanted state against the last pass' (`old`), which the maps hold but for `off`.
    `want` may still be filling (DesiredState.rebuild_steps): each compare() takes its new keys."""

    def __init__(self, name: str, m: MapLike, wanted: Wanted, off: Mapping[bytes, bytes | None],
                 old: Mapping[bytes, bytes]):
        super().__init__(name, m, wanted, off)
        self.old = old
        self.lookup = old.get  # the dict's own getter (no cycle): a full pass calls it per key
        self.examined = 0  # keys of `want` compared so far (it only grows)

    def compare(self) -> Iterable[tuple[bytes, bytes]]:
        fresh = itertools.islice(self.want.items(), self.examined, None)
        self.examined = len(self.want)
        return fresh

    def stale_candidates(self) -> Iterable[bytes]:
        return itertools.chain(self.old, (k for k in self.overlay if k not in self.old))


class _TouchedPass(_MapPass):
    """The last pass' state changed in place: only the touched keys (their value before in
    `before`) and those the kernel refused last time can differ."""

    def __init__(self, name: str, m: MapLike, wanted: Wanted, off: Mapping[bytes, bytes | None],
                 before: Mapping[bytes, bytes | None]):
        super().__init__(name, m, wanted, off)
        self.before = before
        self.keys = list(dict.fromkeys(itertools.chain(before, off)))

    def lookup(self, key: bytes) -> bytes | None:
        return self.before[key] if key in self.before else self.want.get(key)

    def compare(self) -> Iterable[tuple[bytes, bytes]]:
        want, keys, self.keys = self.want, self.keys, []
        return ((k, want[k]) for k in keys if k in want)

    def stale_candidates(self) -> Iterable[bytes]:
        return itertools.chain(self.before, (k for k in self.overlay if k not in self.before))


class _AuditPass(_MapPass):
    """A map read back: what it holds is what was read, streamed a batch at a time and kept
    (in `overlay`) only where it differs from `want`; a restarted agent's pins mostly hold
    what it wants. Read when its first keys are compared, so `want` is complete by then
    unless another app's step adds to the same map (it only grows: what was read and is not
    set apart holds what `want` held then)."""

    def __init__(self, name: str, m: MapLike, wanted: Wanted):
        super().__init__(name, m, wanted, {})
        self._seen: set[bytes] | None = None  # keys read; None: not read yet
        self.examined = 0

    def _read(self) -> None:
        seen, strip, want, overlay = set(), self.m.value_size is not None, self.want, self.overlay
        for key, value in self.m.raw_iter():
            if strip:
                value = value.rstrip(b"\0")
            if not self.present(value):
                continue  # an ARRAY's unused slot
            seen.add(key)
            if want.get(key) != value:
                overlay[key] = value
        self._seen = seen

    def lookup(self, key: bytes) -> bytes | None:
        return self.want.get(key) if key in self._seen else None

    def compare(self) -> Iterable[tuple[bytes, bytes]]:
        if self._seen is None:
            self._read()
        fresh = itertools.islice(self.want.items(), self.examined, None)
        self.examined = len(self.want)
        return fresh

    def writes(self) -> list[tuple[bytes, bytes]]:
        compare = list(self.compare())  # reads the map first: `holds` needs what was read
        present, holds = self.present, self.holds
        return [(k, v) for k, v in compare if present(v) and holds(k) != v]

    def stale_candidates(self) -> Iterable[bytes]:
        if self._seen is None:
            self._read()
        return list(self.overlay)

    def stale(self) -> list[bytes]:
        if self._seen is None:
            self._read()
        want, present, holds = self.want, self.present, self.holds
        return [k for k in self.stale_candidates() if present(holds(k)) and not present(want.get(k))]


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
        self._last: Wanted = {}  # what the last pass brought the maps to
        # keys where the maps differ from _last (a write or removal the kernel refused): what they
        # hold instead (None: nothing); every pass compares these again, so it retries them
        self._off: dict[str, dict[bytes, bytes | None]] = {}
        self._audited_at: float | None = None  # never: the first pass reads every owned map
        self._consistent = False  # the last pass ran to its end: _last and _off say what the maps hold
        # map -> (encode_key, encode_value, strip the value's trailing zeros): looked up once, not
        # per entry (half a million a full pass)
        self._codecs: dict[str, tuple[Callable, Callable, bool]] = {}

    def encode(self, entry: Entry) -> tuple[bytes, bytes]:
        """An entry's key and value as its map stores them, the value without its trailing zeros."""
        codec = self._codecs.get(entry.map)
        if codec is None:
            codec = self._codec(entry.map)
        encode_key, encode_value, strip = codec
        value = encode_value(entry.value)
        return encode_key(entry.key), value.rstrip(b"\0") if strip else value

    def _codec(self, name: str) -> tuple[Callable, Callable, bool]:
        m = self.maps.get(name)
        if m is None or name not in self.owned:  # before any write: a bad pass changes nothing
            raise ValueError(f"an entry for map {name}, which no app declares")
        codec = self._codecs[name] = (m.encode_key, m.encode_value, m.value_size is not None)
        return codec

    def desired_bytes(self, entries: Iterable[Entry]) -> dict[str, dict[bytes, bytes]]:
        """Entries by map as bytes; where several entries share a key, the first one holds it
        (as controller/desired.py decides it)."""
        desired: dict[str, dict[bytes, bytes]] = {name: {} for name in self.managed + self.datapath_written}
        for entry in entries:
            key, value = self.encode(entry)
            desired[entry.map].setdefault(key, value)
        return desired

    def apply(self, entries: Iterable[Entry], audit: bool = False) -> ReconcileResult:
        """Bring the maps to exactly these entries."""
        return self.apply_wanted(self.desired_bytes(entries), audit=audit)

    def apply_wanted(self, wanted: Wanted, touched: Touched | None = None, audit: bool = False,
                     steps: Iterable[set[str]] | None = None) -> ReconcileResult:
        """Bring the maps to `wanted` (map -> key -> value).

        Without `touched`, `wanted` is a new state, compared whole with the last pass' (or, on
        an audit, with what the maps hold). With `touched`, `wanted` is the last pass' state
        changed in place, and `touched` names the keys whose value changed with the value each
        had before: only they (and those the kernel refused last time) are compared, unless an
        audit is due. `steps` (without `touched`): `wanted` is being filled, and each step names
        maps complete so far, written then (in the maps' order), before the next step fills
        more (DesiredState.rebuild_steps)."""
        started = time.monotonic()
        result = ReconcileResult()
        if touched is None and wanted is self._last:
            audit = True  # changed in place without saying what changed: only a read can tell
        result.audited = (audit or not self._consistent or self._audited_at is None
                          or time.monotonic() - self._audited_at >= self.audit_interval)
        self._consistent = False
        order = self.managed + self.datapath_written
        passes = {name: self._begin(name, wanted, touched, result.audited) for name in order}
        # Phase 1: add and update everywhere.
        for step in ([set(order)] if steps is None or touched is not None else itertools.chain(steps, [set(order)])):
            for name in order:
                if name in step:
                    self._write(result, passes[name])
        # Phase 2: only then remove what nobody wants any more.
        for name in order:
            p = passes[name]
            stale = p.stale()
            # an ARRAY slot cannot be deleted: it is written back to zero
            zeros = [b""] * len(stale) if p.m.is_array else None
            p.settle(stale, self._batched(result, "remove", p, stale, zeros))
            self._off[name] = p.deviations()
        self._last = wanted
        self._consistent = True
        if result.changed:  # flows' cached forwarding was decided on what was there before
            fastpath.invalidate(self.maps)
        if result.audited:  # the interval counts from the end: a long full pass is not followed by an audit
            self._audited_at = time.monotonic()
        result.duration = time.monotonic() - started
        return result

    def _begin(self, name: str, wanted: Wanted, touched: Touched | None, audit: bool) -> _MapPass:
        m, off = self.maps[name], self._off.get(name, {})
        if audit and name in self.managed:
            return _AuditPass(name, m, wanted)
        if touched is not None:
            return _TouchedPass(name, m, wanted, off, touched.get(name, {}))
        return _FullPass(name, m, wanted, off, self._last.get(name, _NOTHING))

    def _write(self, result: ReconcileResult, p: _MapPass) -> None:
        """Phase 1 for one map: what is new or changed since it was last compared."""
        writes = p.writes()
        keys = [k for k, _ in writes]
        p.settle(keys, self._batched(result, "write", p, keys, [v for _, v in writes]))

    def _batched(self, result: ReconcileResult, action: str, p: _MapPass, keys: list[bytes],
                 values: list[bytes] | None) -> list[bytes]:
        """Write keys/values (or, values None, delete keys) in order, batched (BATCH entries a
        syscall: the bytes of a batch are made for it, never those of a whole 200,000-entry
        map at once); returns the keys that failed. A batch that fails at one entry has it
        reported and goes on after it: a full map or a vanished interface costs that entry,
        the next pass retries it."""
        failed: list[bytes] = []
        for start in range(0, len(keys), BATCH):
            self._one_batch(result, action, p, keys[start:start + BATCH],
                            None if values is None else values[start:start + BATCH], failed)
        done = len(keys) - len(failed)
        if action == "write":
            result.written += done
        else:
            result.removed += done
        return failed

    @staticmethod
    def _one_batch(result: ReconcileResult, action: str, p: _MapPass, keys: list[bytes], values: list[bytes] | None,
                   failed: list[bytes]) -> None:
        """One batch syscall, resumed after each entry the kernel refuses (added to `failed`)."""
        m, ks = p.m, len(keys[0])
        key_bytes = memoryview(b"".join(keys))  # views: resuming after a failure copies nothing
        if values is None:
            def send(first: int) -> None:
                m.delete_batch_raw(key_bytes[first * ks:])
        else:
            vs = m.value_size or len(values[0])
            value_bytes = memoryview(b"".join(v.ljust(vs, b"\0") for v in values))

            def send(first: int) -> None:
                m.update_batch_raw(key_bytes[first * ks:], value_bytes[first * vs:])
        first = 0
        while first < len(keys):
            try:
                send(first)
                break
            except BatchError as exc:
                at = first + exc.done
                if values is not None or exc.errno != errno.ENOENT:  # a key already gone: what we wanted
                    failed.append(keys[at])
                    key, why = keys[at].hex(), os.strerror(exc.errno)
                    result.errors.append(f"{action} in {p.name}, key {key}: {why}")
                    log.warning("reconcile: %s in %s failed for key %s: %s", action, p.name, key, why)
                first = at + 1
