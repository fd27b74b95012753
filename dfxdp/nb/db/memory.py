"""memory:// — an in-process store with etcd semantics, for tests and demos."""
from __future__ import annotations

import bisect
import threading
from typing import Iterator, Sequence

from .base import KV, CompactedError, Compare, Delete, Event, Op, Put, Store, Watch, mark_complete


class _MemoryWatch(Watch):
    def __init__(self, store: "MemoryStore", prefix: str, start_revision: int):
        self._store = store
        self._prefix = prefix
        self._next = start_revision
        self._cancelled = False

    def __iter__(self) -> Iterator[Event]:
        store = self._store
        while True:
            with store._cond:
                while not self._cancelled:
                    if self._next <= store._compacted:
                        raise CompactedError(store._compacted)
                    pending = store._events_from(self._next, self._prefix)
                    if pending:
                        break
                    store._cond.wait()
                if self._cancelled:
                    return
            for ev in mark_complete(pending):
                self._next = ev.revision + 1
                yield ev

    def cancel(self) -> None:
        with self._store._cond:
            self._cancelled = True
            self._store._cond.notify_all()


class MemoryStore(Store):
    def __init__(self, url: str = "memory://"):
        self.url = url
        self._cond = threading.Condition()
        self._data: dict[str, KV] = {}
        self._rev = 1  # etcd starts at revision 1 with an empty store
        self._log: list[Event] = []  # every event after the compaction point
        self._compacted = 0

    def _events_from(self, revision: int, prefix: str) -> list[Event]:
        revs = [e.revision for e in self._log]
        start = bisect.bisect_left(revs, revision)
        return [e for e in self._log[start:] if e.key.startswith(prefix)]

    def get(self, key: str) -> KV | None:
        with self._cond:
            return self._data.get(key)

    def count(self, prefix: str) -> tuple[int, int]:
        with self._cond:
            return sum(1 for key in self._data if key.startswith(prefix)), self._rev

    def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        with self._cond:
            return [self._data.get(key) for key in keys]

    def range(self, prefix: str) -> tuple[list[KV], int]:
        with self._cond:
            kvs = [kv for k, kv in sorted(self._data.items()) if k.startswith(prefix)]
            return kvs, self._rev

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int | None:
        with self._cond:
            for c in compares:
                kv = self._data.get(c.key)
                if not c.holds(kv.mod_revision if kv else 0):
                    return None
            if not ops:
                return self._rev
            rev = self._rev + 1
            for op in ops:
                if isinstance(op, Put):
                    old = self._data.get(op.key)
                    create = old.create_revision if old else rev
                    self._data[op.key] = KV(op.key, op.value, create, rev)
                    self._log.append(Event("put", op.key, op.value, rev))
                elif isinstance(op, Delete):
                    if self._data.pop(op.key, None) is not None:
                        self._log.append(Event("delete", op.key, None, rev))
            self._rev = rev
            self._cond.notify_all()
            return rev

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return _MemoryWatch(self, prefix, start_revision)

    def revision(self) -> int:
        with self._cond:
            return self._rev

    def compact(self, revision: int) -> None:
        with self._cond:
            self._compacted = max(self._compacted, revision - 1)
            self._log = [e for e in self._log if e.revision >= revision]
            self._cond.notify_all()
