"""Optimistic read-validate-write on the NB store.

A Txn records the mod revision of every key it reads and commits all its
writes in one store transaction guarded by those revisions, plus "must not
exist" guards for reservations (IPs, MACs, a project's default group). A check
that reads a list of children (`children`: the subnets of a network, the rules
of a group) reads the parent's member keys, then those children, and is guarded
as a whole by one compare: the parent's guard key (dfxdp/nb/index.py), which
every child written (created, changed or deleted) rewrites, unchanged since the
list was read. If anything it read
changed meanwhile, nothing is written and `run_txn` starts over: concurrent
writers never lose an update, never hand out one address twice, and never both
pass a check that only one of them may pass (write skew).
"""
from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timezone
from typing import Callable, TypeVar

from . import recall
from .db.base import KV, Compare, Delete, Put, Store, StoreError
from .errors import Conflict, not_found
from .index import index_key, index_keys_of, member_writes, members_prefix, ownership_writes, parent_kind, references

NB = "/dfxdp/nb/"
# rewritten by every transaction that writes NB objects: its mod revision is the store's as of
# the last NB change (what a copy of the NB objects must have applied, dfxdp/nb/mirror.py)
NB_REVISION = "/dfxdp/nb-revision"
ALLOC = "/dfxdp/alloc/"
QUOTA = "/dfxdp/quota/"  # a project's quota overrides (dfxdp/nb/quotas.py)
# what a transaction's first attempt takes from the process' memory (dfxdp/nb/recall.py), and
# the lists of children of these kinds: what every port create reads and rarely changes
RECALLED = (f"{NB}network/", f"{NB}subnet/", QUOTA)
MAX_ATTEMPTS = 20
FEW_PARENTS = 8  # children_of: up to this many parents, their children are read parent by parent
KEY_BLOCK = 64

T = TypeVar("T")


def obj_key(kind: str, obj_id: str) -> str:
    return f"{NB}{kind}/{obj_id}"


def now() -> str:
    """A timestamp as NB objects carry it (created_at, updated_at)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Txn:
    def __init__(self, store: Store, attempt: int = 0, recalling: bool = False):
        self.store = store
        self.attempt = attempt  # of run_txn: 0 first, then each retry
        # recalling: RECALLED keys and lists as this process last knew them, unread (a guarded
        # write's first attempt: run_txn); what was taken so, to forget if the commit fails;
        # and the lists read, to remember if it goes through
        self._recall = recall.of(store) if recalling else None
        self._recalled_keys: set[str] = set()
        self._recalled_lists: set[str] = set()
        self._lists_read: dict[str, recall.List] = {}
        # what modules derive from this txn's reads and keep up to date for the rest of it
        # (e.g. a subnet's addresses in use, dfxdp/nb/ipam.py), so a bulk derives it once
        self.memo: dict = {}
        self._compares: dict[str, int] = {}  # key -> the mod revision it must still have (0: absent)
        self._unchanged_since: dict[str, int] = {}  # index key -> a revision it must not be written after
        self._writes: dict[str, bytes | None] = {}  # None = delete
        # the same writes by directory (a key up to its last "/"): the lists and key sets
        # below apply this txn's writes under a prefix without scanning all of them
        self._writes_in: dict[str, dict[str, bytes | None]] = {}
        self._kind_writes: dict[str, int] = {}  # kind -> how many of its objects this txn wrote
        self._committed: list[Callable[[int], None]] = []
        self._conflicted: list[Callable[[], None]] = []
        # Everything this txn read (None: absent) and every prefix it read whole with the
        # revision of that read, so that no key or prefix costs a second round trip.
        self._seen: dict[str, KV | None] = {}
        self._ranges: dict[str, tuple[list[KV], int]] = {}

    def _unseen(self, key: str) -> bool:
        return key not in self._seen and not any(key.startswith(p) for p in self._ranges)

    def _read(self, key: str) -> KV | None:
        """key as the store had it when this txn first read it; the commit guards it."""
        if self._unseen(key) and not self._recalled(key):
            self._seen[key] = self.store.get(key)
        kv = self._seen.get(key)  # absent under a prefix read whole: not there
        self._compares.setdefault(key, kv.mod_revision if kv else 0)
        return kv

    def _recalled(self, key: str) -> bool:
        """Take key from the process' memory, if this txn may and it is known there."""
        if self._recall is None or not key.startswith(RECALLED):
            return False
        known, kv = self._recall.key(key)
        if known:
            self._seen[key] = kv
            self._recalled_keys.add(key)
        return known

    def _read_many(self, keys: list[str]) -> None:
        """Read the keys not read yet in one go (not guarded one by one: see children)."""
        unseen = [key for key in keys if self._unseen(key)]
        if unseen:
            self._seen.update(zip(unseen, self.store.get_many(unseen)))

    def get_raw(self, key: str) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        kv = self._read(key)
        return kv.value if kv else None

    def stored(self, key: str) -> KV | None:
        """The KV this txn read for key (None if absent or not read), whatever it wrote since."""
        return self._seen.get(key)

    def assume(self, kv: KV) -> None:
        """Take kv as read without reading it (a process remembers what it saw): the
        commit still guards it, so a stale memory costs a retry, never a wrong write."""
        self._seen.setdefault(kv.key, kv)

    def _range(self, prefix: str) -> tuple[list[KV], int]:
        if prefix not in self._ranges:
            kvs, revision = self.store.range(prefix)
            self._ranges[prefix] = (kvs, revision)
            for kv in kvs:
                self._seen.setdefault(kv.key, kv)
        return self._ranges[prefix]

    def get(self, kind: str, obj_id: str) -> dict | None:
        raw = self.get_raw(obj_key(kind, obj_id))
        return json.loads(raw) if raw else None

    def require(self, kind: str, obj_id: str | None) -> dict:
        """The object, or the kind's NotFound (a missing id is one too)."""
        doc = self.get(kind, obj_id) if obj_id else None
        if doc is None:
            raise not_found(kind, obj_id or "(none)")
        return doc

    def _write(self, key: str, value: bytes | None) -> None:
        self._writes[key] = value
        if key.startswith(NB):
            kind = key[len(NB):key.index("/", len(NB))]
            self._kind_writes[kind] = self._kind_writes.get(kind, 0) + 1
        self._writes_in.setdefault(key[:key.rindex("/") + 1], {})[key] = value

    def writes_of(self, kind: str) -> int:
        """How many writes of objects of kind this txn made: what a module derives from them
        (in `memo`) holds while this stays the same."""
        return self._kind_writes.get(kind, 0)

    def _written_under(self, prefix: str) -> dict[str, bytes | None]:
        """This txn's writes of keys under prefix."""
        found: dict[str, bytes | None] = {}
        for directory, writes in self._writes_in.items():
            if directory.startswith(prefix):
                found.update(writes)
            elif prefix.startswith(directory):
                found.update((k, v) for k, v in writes.items() if k.startswith(prefix))
        return found

    def list(self, kind: str) -> list[dict]:
        """Every object of a kind, with this txn's own writes applied. Not guarded as a
        list: for views; a check that decides a write reads `children` instead."""
        prefix = f"{NB}{kind}/"
        found = {kv.key: kv.value for kv in self._range(prefix)[0]}
        found.update(self._written_under(prefix))
        return [json.loads(v) for v in found.values() if v]

    def children(self, kind: str, parent: str, parent_id: str) -> list[dict]:
        """The objects of `kind` that name the parent (a kind, or a kind:role as
        dfxdp/nb/index.py names them), this txn's own writes applied, guarded as a list:
        the commit fails if one of them was written or another came to name the parent
        since. Read by parent: its member keys, then those children (a few round trips,
        whatever the size of the kind). The parent is read (and guarded) too: its index
        keys die with it. (One compare per list, not one per child: etcd takes at most 128
        in a transaction.)"""
        self.get_raw(obj_key(parent_kind(parent), parent_id))
        members = members_prefix(parent, parent_id, kind)
        remembered = obj_key(kind, "").startswith(RECALLED)
        if remembered and members not in self._ranges:
            self._recalled_list(members)
        kvs, revision = self._range(members)
        idx = index_key(parent, parent_id, kind)
        # a child written after the member keys were read rewrites idx: read at any later
        # revision, the children are then refused at the commit, never taken stale
        self._unchanged_since[idx] = min(revision, self._unchanged_since.get(idx, revision))
        keys = {obj_key(kind, kv.key[len(members):]) for kv in kvs}
        written = self._written_under(f"{NB}{kind}/")
        self._read_many(sorted(keys - written.keys()))
        if remembered:
            self._lists_read[members] = recall.List(kvs, revision, {key: self._seen.get(key) for key in keys})
        found = {key: self._seen[key].value for key in keys - written.keys() if self._seen.get(key)}
        found.update((key, value) for key, value in written.items() if value is not None)
        docs = (json.loads(value) for _key, value in sorted(found.items()))
        return [doc for doc in docs if (parent, parent_id) in references(kind, doc)]

    def _recalled_list(self, members: str) -> None:
        """Take a list of children (its member keys, their revision, the children) from the
        process' memory, if this txn may and it is known there."""
        found = self._recall.list(members) if self._recall is not None else None
        if found is None:
            return
        self._ranges[members] = (found.members, found.revision)
        for kv in found.members:
            self._seen.setdefault(kv.key, kv)
        for key, kv in found.children.items():
            self._seen.setdefault(key, kv)
        self._recalled_lists.add(members)

    def children_of(self, kind: str, parent: str, parent_ids: list[str]) -> dict[str, list[dict]]:
        """For what is shown (derived fields): each parent's children, read by parent for a
        few parents (a create, a show: whatever the size of the kind), from the whole kind
        for many (a list: one read rather than one per parent)."""
        if len(parent_ids) <= FEW_PARENTS:
            return {parent_id: self.children(kind, parent, parent_id) for parent_id in parent_ids}
        found: dict[str, list[dict]] = {parent_id: [] for parent_id in parent_ids}
        for doc in self.list(kind):
            for named, parent_id in references(kind, doc):
                if named == parent and parent_id in found:
                    found[parent_id].append(doc)
        return found

    def count_guarded(self, prefix: str, idx: str) -> int:
        """How many keys are under prefix, guarded as a list by the index key idx (every write
        that adds or removes one rewrites idx): the commit fails if the count changed since.
        Counted by the store, not read: a project's 100,000 ports are one small answer."""
        if prefix in self._ranges:
            count, revision = len(self._ranges[prefix][0]), self._ranges[prefix][1]
        else:
            count, revision = self.store.count(prefix)
        self._unchanged_since[idx] = min(revision, self._unchanged_since.get(idx, revision))
        written = self._written_under(prefix)
        self._read_many(sorted(written))
        return count + sum((value is not None) - (self._seen.get(key) is not None) for key, value in written.items())

    def keys_under(self, prefix: str) -> set[str]:
        keys = {kv.key for kv in self._range(prefix)[0]}
        written = self._written_under(prefix)
        keys |= {k for k, v in written.items() if v is not None}
        return keys - {k for k, v in written.items() if v is None}

    def put(self, kind: str, obj: dict) -> None:
        """Store obj: an update if this txn read it, else a new object."""
        self._write(obj_key(kind, obj["id"]), json.dumps(obj, sort_keys=True).encode())

    def delete(self, kind: str, obj_id: str) -> None:
        self.get_raw(obj_key(kind, obj_id))  # guard: it must not change under us
        self._write(obj_key(kind, obj_id), None)

    def reserve(self, key: str, owner: str) -> bool:
        """Claim `key` for owner; False when someone holds it already."""
        if self.get_raw(key) is not None:
            return False
        self._write(key, owner.encode())
        return True

    def reserve_unread_first(self, key: str, owner: str) -> bool:
        """reserve(), but on a transaction's first attempt without reading the key: it is
        claimed (guarded as absent), so a taken one fails the commit, and the retry reads
        it and answers. For keys rarely taken (a port's DNS names), one round trip fewer."""
        if self.attempt == 0 and key not in self._seen and key not in self._writes:
            self.claim(key, owner)
            return True
        return self.reserve(key, owner)

    def claim(self, key: str, owner: str) -> bool:
        """Reserve a key believed free (a random MAC) without reading it first: if
        someone holds it, the commit fails and run_txn starts over with a fresh pick.
        False, writing nothing, when this transaction wrote the key already (two objects of
        one bulk drew the same value): the store's compare cannot see that one."""
        if key in self._writes:
            return False
        self._compares.setdefault(key, 0)
        self._write(key, owner.encode())
        return True

    def release(self, key: str) -> None:
        self._write(key, None)

    def set_raw(self, key: str, value: bytes) -> None:
        self._write(key, value)

    def on_commit(self, callback: Callable[[int], None]) -> None:
        """Run callback(revision) once this transaction's writes are in the store."""
        self._committed.append(callback)

    def on_conflict(self, callback: Callable[[], None]) -> None:
        """Run callback if this transaction's writes are not made: the commit is refused
        because something read has changed, or the request is refused (run_txn)."""
        self._conflicted.append(callback)

    def abandon(self) -> None:
        """Nothing of this transaction will be written (its request refused)."""
        for conflicted in self._conflicted:
            conflicted()

    def _index_writes(self) -> dict[str, bytes | None]:
        """Rewrite the guard key of every parent a written object names, before or after
        the write, and its member keys; delete the guard keys of deleted objects."""
        writes: dict[str, bytes | None] = {}
        gone: list[str] = []
        for key, value in self._writes.items():
            if not key.startswith(NB):
                continue
            kind, obj_id = key[len(NB):].split("/", 1)
            before = self._seen.get(key)
            old = json.loads(before.value) if before else None
            new = json.loads(value) if value is not None else None
            for parent, parent_id in references(kind, old) | references(kind, new):
                writes[index_key(parent, parent_id, kind)] = obj_id.encode()
            writes.update(member_writes(kind, obj_id, old, new))
            writes.update(ownership_writes(kind, old, new))
            if before and value is None:
                gone += index_keys_of(kind, obj_id)
        writes.update(dict.fromkeys(gone))
        return writes

    def _guards(self) -> list[Compare]:
        return [Compare(k, rev) for k, rev in self._compares.items()] + \
            [Compare(k, rev + 1, "less") for k, rev in self._unchanged_since.items()]

    def still_holds(self) -> bool:
        """Whether everything this txn read is still as it was (one round trip, no write)."""
        guards = self._guards()
        return not guards or self._settle(self.store.txn(guards, [])) is not None

    def commit(self) -> int | None:
        writes = {**self._writes, **self._index_writes()}
        if any(key.startswith(NB) for key in self._writes):
            writes[NB_REVISION] = b""
        ops = [Put(k, v) if v is not None else Delete(k) for k, v in writes.items()]
        revision = self._settle(self.store.txn(self._guards(), ops))
        if revision is not None:
            if self._recall is not None:
                self._recall.learn({key: self._seen.get(key) for key in self._compares if key.startswith(RECALLED)},
                                   self._lists_read, writes)
            for committed in self._committed:
                committed(revision)
        return revision

    def _settle(self, revision: int | None) -> int | None:
        if revision is None:
            if self._recall is not None:
                self._recall.forget(self._recalled_keys, self._recalled_lists)
            for conflicted in self._conflicted:
                conflicted()
        return revision


def run_txn(store: Store, body: Callable[[Txn], T]) -> T:
    """Run body on a fresh Txn until its commit goes through (bounded retries).

    A refusal (an error from body) is answered only if what it was decided on
    still holds: reads made at different moments may disagree (a network read,
    then its subnets gone with it), and such a request runs again instead.
    Writers that collided back off for a random, growing moment, so they do
    not collide again in lockstep."""
    from .layout import ensure  # imported here: the layout's upgrade builds on this module
    ensure(store)  # the reads below rely on the current layout
    for attempt in range(MAX_ATTEMPTS):
        txn = Txn(store, attempt, recalling=attempt == 0)
        try:
            result = body(txn)
        except StoreError:
            txn.abandon()
            raise
        except Exception:
            if txn.still_holds():
                txn.abandon()
                raise
        else:
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
        txn.on_commit(lambda _revision: self._adopt(kind, first + 1, end))
        return first

    def _adopt(self, kind: str, first: int, end: int) -> None:
        with self._lock:
            self._free[kind] = (first, end)
