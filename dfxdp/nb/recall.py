"""What a process last knew of the keys every create reads and that rarely change.

A port create reads its network, the network's list of subnets and those subnets, and its
project's quota overrides: four etcd round trips of a five-round-trip create, for objects
that change a few times in their life. A transaction's first attempt (dfxdp/nb/txn.py
`run_txn`) takes them from here instead, unread, and its commit still guards them as if
read: a key by its mod revision, a list by its guard key unchanged since the list was
read. A stale memory (another server changed the network or added a subnet) fails the
commit, everything the transaction took from here is forgotten, and the retry reads the
store. So it costs a retry now and then, never a wrong write.

Learnt from committed transactions only (what they read held until their commit); keys
and lists a commit writes are forgotten (the next one reads them). Plain reads (a show, a
list) never use it: they must see other servers' writes at once. Which keys are kept is
the transactions' choice (dfxdp/nb/txn.py RECALLED).
"""
from __future__ import annotations

import threading
import weakref
from typing import Iterable

from .db.base import KV, Store

# past this many keys or lists, start over (memory bounded; the next creates read again)
LIMIT = 20_000


class List:
    """A parent's list of children as a transaction read it: its member keys and the store
    revision they were read at (what the list's guard compares against), and the children
    (None: gone)."""

    __slots__ = ("members", "revision", "children")

    def __init__(self, members: list[KV], revision: int, children: dict[str, KV | None]):
        self.members, self.revision, self.children = members, revision, children


class Recall:
    def __init__(self):
        self._lock = threading.Lock()
        self._keys: dict[str, KV | None] = {}  # None: absent (a project without quota overrides)
        self._lists: dict[str, List] = {}  # members prefix -> the list

    def key(self, key: str) -> tuple[bool, KV | None]:
        """(known?, the KV) of a remembered key."""
        with self._lock:
            return key in self._keys, self._keys.get(key)

    def list(self, members: str) -> List | None:
        with self._lock:
            return self._lists.get(members)

    def learn(self, keys: dict[str, KV | None], lists: dict[str, List], written: Iterable[str]) -> None:
        """After a commit: what it read (it held until then), less what it wrote."""
        written = set(written)
        with self._lock:
            for key in written:
                self._keys.pop(key, None)
                # a list's guard key, or one of its member keys (its directory), was written
                self._lists.pop(key + "/", None)
                self._lists.pop(key[:key.rindex("/") + 1], None)
            if len(self._keys) + len(keys) > LIMIT or len(self._lists) + len(lists) > LIMIT:
                self._keys, self._lists = {}, {}
            self._keys.update((k, kv) for k, kv in keys.items() if k not in written)
            self._lists.update((prefix, found) for prefix, found in lists.items()
                               if prefix[:-1] not in written and not written & found.children.keys())

    def forget(self, keys: Iterable[str], lists: Iterable[str]) -> None:
        """What a refused commit took from here: some of it is stale."""
        with self._lock:
            for key in keys:
                self._keys.pop(key, None)
            for prefix in lists:
                self._lists.pop(prefix, None)


_recalls: "weakref.WeakKeyDictionary[Store, Recall]" = weakref.WeakKeyDictionary()
_recalls_lock = threading.Lock()


def of(store: Store) -> Recall:
    """This process' memory of a store."""
    with _recalls_lock:
        found = _recalls.get(store)
        if found is None:
            found = _recalls[store] = Recall()
        return found
