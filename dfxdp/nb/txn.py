"""Optimistic read-validate-write on the NB store.

A Txn records the mod revision of every key it reads and commits all its
writes in one store transaction guarded by those revisions, plus "must not
exist" guards for reservations (IPs, MACs). If anything it read changed
meanwhile, nothing is written and `run_txn` starts over: concurrent writers
never lose an update and never hand out one address twice.
"""
from __future__ import annotations

import json
import random
import threading
import time
from typing import Callable, TypeVar

from .db.base import KV, Compare, Delete, Put, Store
from .errors import Conflict

NB = "/dfxdp/nb/"
ALLOC = "/dfxdp/alloc/"
MAX_ATTEMPTS = 20
KEY_BLOCK = 64

T = TypeVar("T")


def obj_key(kind: str, obj_id: str) -> str:
    return f"{NB}{kind}/{obj_id}"


class Txn:
    def __init__(self, store: Store):
        self.store = store
        self._compares: dict[str, int] = {}
        self._writes: dict[str, bytes | None] = {}  # None = delete
        self._committed: list[Callable[[], None]] = []
        # What range reads of this txn saw, so that a later get of the same key costs no
        # round trip: a key under a prefix read whole, and not found there, is absent.
        self._seen: dict[str, KV] = {}
        self._prefixes_read: list[str] = []

    def get_raw(self, key: str) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        if key in self._seen or any(key.startswith(p) for p in self._prefixes_read):
            kv = self._seen.get(key)
        else:
            kv = self.store.get(key)
        # the commit only goes through if the key is still as read (the same guard for both paths)
        self._compares.setdefault(key, kv.mod_revision if kv else 0)
        return kv.value if kv else None

    def _range(self, prefix: str) -> list[KV]:
        kvs, _ = self.store.range(prefix)
        self._seen.update((kv.key, kv) for kv in kvs)
        self._prefixes_read.append(prefix)
        return kvs

    def get(self, kind: str, obj_id: str) -> dict | None:
        raw = self.get_raw(obj_key(kind, obj_id))
        return json.loads(raw) if raw else None

    def list(self, kind: str) -> list[dict]:
        """Every object of a kind, with this txn's own writes applied."""
        prefix = f"{NB}{kind}/"
        kvs = self._range(prefix)
        found = {kv.key: kv.value for kv in kvs}
        for key, value in self._writes.items():
            if key.startswith(prefix):
                found[key] = value
        return [json.loads(v) for v in found.values() if v]

    def keys_under(self, prefix: str) -> set[str]:
        kvs = self._range(prefix)
        keys = {kv.key for kv in kvs}
        keys |= {k for k, v in self._writes.items() if k.startswith(prefix) and v is not None}
        return keys - {k for k, v in self._writes.items() if v is None}

    def put(self, kind: str, obj: dict) -> None:
        self._writes[obj_key(kind, obj["id"])] = json.dumps(obj, sort_keys=True).encode()

    def delete(self, kind: str, obj_id: str) -> None:
        self.get_raw(obj_key(kind, obj_id))  # guard: it must not change under us
        self._writes[obj_key(kind, obj_id)] = None

    def reserve(self, key: str, owner: str) -> bool:
        """Claim `key` for owner; False when someone holds it already."""
        if self.get_raw(key) is not None:
            return False
        self._writes[key] = owner.encode()
        return True

    def claim(self, key: str, owner: str) -> None:
        """Reserve a key believed free (a random MAC) without reading it first: if
        someone holds it, the commit fails and run_txn starts over with a fresh pick."""
        self._compares.setdefault(key, 0)
        self._writes[key] = owner.encode()

    def release(self, key: str) -> None:
        self._writes[key] = None

    def set_raw(self, key: str, value: bytes) -> None:
        self._writes[key] = value

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run callback once this transaction's writes are in the store."""
        self._committed.append(callback)

    def commit(self) -> int | None:
        compares = [Compare(k, rev) for k, rev in self._compares.items()]
        ops = [Put(k, v) if v is not None else Delete(k) for k, v in self._writes.items()]
        revision = self.store.txn(compares, ops)
        if revision is not None:
            for callback in self._committed:
                callback()
        return revision


def run_txn(store: Store, body: Callable[[Txn], T]) -> T:
    """Run body on a fresh Txn until its commit goes through (bounded retries).

    Writers that collided back off for a random, growing moment, so they do
    not collide again in lockstep."""
    for attempt in range(MAX_ATTEMPTS):
        txn = Txn(store)
        result = body(txn)
        if txn.commit() is not None:
            return result
        time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise Conflict("Conflict", "too many concurrent changes to the same objects; try again")


class KeyAllocator:
    """Datapath keys (small unique integers per kind) handed out from blocks.

    Taking every key from one shared counter made all concurrent creates of a
    kind collide on it. A process instead claims KEY_BLOCK keys at a time and
    serves its next creates from them. The claim is written by the transaction
    that needs the first key of the block, so it only counts if that commits:
    a rejected request leaves the store as it was. Keys are never reused; keys
    a process does not use are a gap, nothing more.
    """

    def __init__(self, block: int = KEY_BLOCK):
        self.block = block
        self._free: dict[str, tuple[int, int]] = {}  # kind -> [next, end)
        self._lock = threading.Lock()

    def next(self, txn: Txn, kind: str, limit: int) -> int:
        """A key of `kind` (1 … limit-1) for an object `txn` creates."""
        with self._lock:
            first, end = self._free.get(kind, (0, 0))
            if first < end:
                self._free[kind] = (first + 1, end)
                return first
        counter = f"{ALLOC}keys/{kind}"  # the last key claimed by anyone
        raw = txn.get_raw(counter)
        first = int(raw) + 1 if raw else 1
        if first >= limit:
            raise Conflict("ResourceExhausted", f"no free {kind} key left (limit {limit})")
        end = min(first + self.block, limit)
        txn.set_raw(counter, str(end - 1).encode())
        txn.on_commit(lambda: self._adopt(kind, first + 1, end))
        return first

    def _adopt(self, kind: str, first: int, end: int) -> None:
        with self._lock:
            self._free[kind] = (first, end)
