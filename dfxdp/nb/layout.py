"""The NB store's layout version, and the upgrade of a store written by an older one.

`/dfxdp/layout` holds the layout a store is in. Layout 1 added the member keys of
every parent's list of children (dfxdp/nb/index.py): a store from before has none, and
a `children` read on it would find no children at all (a network with ports deleted, an
overlapping subnet let in). So every writer (the NB service) upgrades the store before
it serves: it writes the member keys of every stored object, in batches each guarded
by the mod revisions of the objects it indexes (an object changed meanwhile by a writer
that already keeps them is read again), then the layout. Idempotent: several servers
starting at once may all do it; a store at the current layout costs one read. Servers of
an older version must not write meanwhile: they keep no member keys (upgrade them all).
"""
from __future__ import annotations

import json
import logging
import weakref

from .db.base import KV, Compare, Put, Store
from .index import member_writes
from .txn import NB

log = logging.getLogger(__name__)

LAYOUT_KEY = "/dfxdp/layout"
CHILD_MEMBERS = 1  # member keys under /dfxdp/idx/<parent>/<id>/<child kind>/<child id>
CURRENT = CHILD_MEMBERS
BATCH_OPS = 100  # puts and compares per transaction, within etcd's default --max-txn-ops (128)
_current: "weakref.WeakSet[Store]" = weakref.WeakSet()  # stores this process found (or made) current


def layout(store: Store) -> int:
    kv = store.get(LAYOUT_KEY)
    return int(kv.value) if kv else 0


def ensure(store: Store) -> None:
    """Upgrade the store unless this process did (or found it done) already: every NB
    transaction asks (dfxdp/nb/txn.py run_txn), so a server that could not reach its store
    at start still upgrades it before its first write."""
    if store not in _current:
        upgrade(store)
        _current.add(store)


def upgrade(store: Store) -> int:
    """Bring the store to the CURRENT layout; returns the number of objects indexed."""
    if layout(store) >= CURRENT:
        return 0
    kvs, _revision = store.range(NB)
    for batch in _batches(kvs):
        while batch:
            batch = _index(store, batch)
    store.put(LAYOUT_KEY, str(CURRENT).encode())
    if kvs:
        log.info("NB store upgraded to layout %d: member keys of %d objects", CURRENT, len(kvs))
    return len(kvs)


def _members(kv: KV) -> list[Put]:
    kind, obj_id = kv.key[len(NB):].split("/", 1)
    return [Put(key, value) for key, value in member_writes(kind, obj_id, None, json.loads(kv.value)).items()
            if value is not None]


def _batches(kvs: list[KV]) -> list[list[KV]]:
    """kvs in runs of about BATCH_OPS operations (an object's compare and its member keys)."""
    batches: list[list[KV]] = [[]]
    ops = 0
    for kv in kvs:
        cost = 1 + len(_members(kv))
        if batches[-1] and ops + cost > BATCH_OPS:
            batches.append([])
            ops = 0
        batches[-1].append(kv)
        ops += cost
    return [batch for batch in batches if batch]


def _index(store: Store, batch: list[KV]) -> list[KV]:
    """Write the member keys of batch's objects as they are; what changed meanwhile is
    returned (read again) to be done again, and an object gone meanwhile needs none."""
    puts = [put for kv in batch for put in _members(kv)]
    if store.txn([Compare(kv.key, kv.mod_revision) for kv in batch], puts) is not None:
        return []
    return [kv for kv in store.get_many([kv.key for kv in batch]) if kv is not None]
