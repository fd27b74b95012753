"""The agent-side view of an NB prefix: a snapshot, then every change in order.

    for item in Watcher(store, "/dfxdp/nb/"):
        if isinstance(item, Snapshot): rebuild from item.kvs
        else: apply the Event

After a compaction took the history the watch needed, the watcher yields a
fresh Snapshot (a full resync) and goes on from there; the consumer replaces
its state wholesale, so nothing is missed even then.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator, Union

from .db.base import KV, CompactedError, Event, Store, Watch


@dataclass(frozen=True)
class Snapshot:
    kvs: Iterable[KV]  # read from the store a page at a time as it is iterated: iterate it once
    revision: int


class Watcher:
    def __init__(self, store: Store, prefix: str):
        self.store, self.prefix = store, prefix
        self._cancelled = threading.Event()
        self._watch: Watch | None = None
        self.revision = 0  # last revision applied: snapshot or event

    def __iter__(self) -> Iterator[Union[Snapshot, Event]]:
        while not self._cancelled.is_set():
            pages, revision = self.store.range_pages(self.prefix)
            self.revision = revision
            yield Snapshot(itertools.chain.from_iterable(pages), revision)
            try:
                while not self._cancelled.is_set():
                    self._watch = self.store.watch(self.prefix, self.revision + 1)
                    if self._cancelled.is_set():
                        return
                    for event in self._watch:
                        self.revision = event.revision
                        yield event
                    return  # the watch ended because we were cancelled
            except CompactedError:
                continue  # history gone: resync from a new snapshot

    def cancel(self) -> None:
        self._cancelled.set()
        if self._watch is not None:
            self._watch.cancel()
