"""The one interface every NB database driver implements.

The model is etcd's: a flat, ordered key space of bytes values, a single
store-wide revision bumped by every successful write, multi-key transactions
guarded by compare-and-swap on a key's mod revision, and prefix watches that
deliver events in revision order starting from any revision that has not been
compacted away. sqlite and memory drivers emulate exactly this, so the layers
above (NB service, agent cache) never know which backend they talk to.
"""
from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Iterator, Literal, Sequence, Union


class StoreError(Exception):
    """The store could not do what was asked (connection lost, bad URL …)."""


class CompactedError(StoreError):
    """A watch asked for history that has been compacted away: resync fully."""

    def __init__(self, compact_revision: int):
        super().__init__(f"revision compacted up to {compact_revision}")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Event:
    type: Literal["put", "delete"]
    key: str
    value: bytes | None  # None for deletes
    revision: int
    # no more events of this revision follow (a transaction's writes share one revision):
    # what a consumer has applied up to here is the store as of `revision`
    complete: bool = True


def mark_complete(events: list[Event]) -> list[Event]:
    """Events of whole transactions, in order, each marked complete if it is the last of its
    revision."""
    return [dataclasses.replace(ev, complete=i + 1 == len(events) or events[i + 1].revision != ev.revision)
            for i, ev in enumerate(events)]


@dataclass(frozen=True)
class Compare:
    """Holds when `key`'s mod revision equals `mod_revision` (0 means "absent"), or with
    result "less" when it is below it: "unchanged since revision mod_revision - 1", a
    guard that needs no read of the key (an absent key counts as revision 0)."""

    key: str
    mod_revision: int
    result: Literal["equal", "less"] = "equal"

    def holds(self, current: int) -> bool:
        """Whether the guard holds for a key now at mod revision `current` (0: absent)."""
        return current == self.mod_revision if self.result == "equal" else current < self.mod_revision


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True)
class Delete:
    key: str


Op = Union[Put, Delete]


class Watch(abc.ABC):
    """An iterator of events under a prefix, in revision order.

    Iteration blocks until an event arrives or `cancel()` is called (then it
    ends). It raises CompactedError when the requested start revision is gone.
    Drivers reconnect by themselves after a transient failure, resuming from
    the revision after the last delivered event, so no event is lost or
    repeated.
    """

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Event]: ...

    @abc.abstractmethod
    def cancel(self) -> None: ...


class Store(abc.ABC):
    url: str

    @abc.abstractmethod
    def get(self, key: str) -> KV | None: ...

    @abc.abstractmethod
    def range(self, prefix: str) -> tuple[list[KV], int]:
        """All keys under prefix (sorted) and the store revision they were read at."""

    def count(self, prefix: str) -> tuple[int, int]:
        """How many keys are under prefix, and the store revision they were counted at
        (drivers count without reading the keys)."""
        kvs, revision = self.range(prefix)
        return len(kvs), revision

    def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        """The keys' KVs (None: absent), in the order asked; drivers read them in a few round
        trips rather than one per key."""
        return [self.get(key) for key in keys]

    def range_pages(self, prefix: str, page_size: int = 1000) -> tuple[Iterator[list[KV]], int]:
        """range() a page at a time, every page read at the revision returned, so a reader
        (an agent's snapshot of 100,000 documents) never holds the whole answer at once.
        By default range() cut in pages: the stores in this process' memory hold it anyway."""
        kvs, revision = self.range(prefix)
        return (kvs[i:i + page_size] for i in range(0, max(len(kvs), 1), page_size)), revision

    @abc.abstractmethod
    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int | None:
        """Apply all ops atomically if every compare holds.

        Returns the new store revision, or None when a compare failed (then
        nothing changed). A transaction with no ops that succeeds returns the
        current revision.
        """

    @abc.abstractmethod
    def watch(self, prefix: str, start_revision: int) -> Watch:
        """Events under prefix with revision >= start_revision."""

    @abc.abstractmethod
    def revision(self) -> int: ...

    @abc.abstractmethod
    def compact(self, revision: int) -> None:
        """Forget history before revision (watches starting earlier fail)."""

    def close(self) -> None:
        pass

    # Convenience built on the primitives above.
    def put(self, key: str, value: bytes) -> int:
        rev = self.txn([], [Put(key, value)])
        assert rev is not None
        return rev

    def delete(self, key: str) -> int:
        rev = self.txn([], [Delete(key)])
        assert rev is not None
        return rev
