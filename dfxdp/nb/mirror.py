"""The API server's copy of the NB objects, for lists.

Listing a kind from the store reads and parses every object of it on every request: at
100,000 ports that is seconds of etcd range and JSON. A server instead keeps every NB
object parsed in memory, fed by a watch (dfxdp/nb/watcher.py: a snapshot, then every change
in order, a new snapshot after a compaction). A list is never older than the request: it
first asks the store for its current revision (one small read) and waits until the copy has
applied every change up to it. The watch covers all of /dfxdp/, whose every write advances
the revision the copy has reached, and the revision is the store's; should the copy not catch
up within WAIT_SECONDS (the watch broken, or a write outside /dfxdp/), the list is read from
the store as before.
"""
from __future__ import annotations

import json
import logging
import threading

from .db.base import Store
from .txn import NB
from .watcher import Snapshot, Watcher

log = logging.getLogger(__name__)

ROOT = "/dfxdp/"
WAIT_SECONDS = 2.0
# a prefix no key has: its (empty) range answers with the store's current revision
REVISION_PROBE = f"{NB}~revision/"


class Mirror:
    def __init__(self, store: Store):
        self.store = store
        self._docs: dict[str, dict[str, dict]] = {}  # kind -> id -> object
        self._revision = 0
        self._changed = threading.Condition()
        self._watcher = Watcher(store, ROOT)
        self._thread = threading.Thread(target=self._follow, name="nb-mirror", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for item in self._watcher:
                with self._changed:
                    if isinstance(item, Snapshot):
                        self._docs = {}
                        for kv in item.kvs:
                            self._apply(kv.key, kv.value)
                        self._revision = item.revision
                    else:
                        self._apply(item.key, item.value if item.type != "delete" else None)
                        if not item.complete:  # the rest of its transaction is still to come
                            continue
                        self._revision = item.revision
                    self._changed.notify_all()
        except Exception:  # lists fall back to the store; the reason goes to the log
            log.exception("NB mirror stopped following the store")

    def _apply(self, key: str, value: bytes | None) -> None:
        if not key.startswith(NB):
            return
        kind, obj_id = key[len(NB):].split("/", 1)
        if value is None:
            self._docs.get(kind, {}).pop(obj_id, None)
        else:
            self._docs.setdefault(kind, {})[obj_id] = json.loads(value)

    def list(self, kind: str) -> list[dict] | None:
        """Every object of kind as of now (copies: callers add derived fields), or None when
        the copy could not catch up with the store."""
        _kvs, revision = self.store.range(REVISION_PROBE)
        with self._changed:
            if not self._changed.wait_for(lambda: self._revision >= revision, timeout=WAIT_SECONDS):
                log.warning("NB mirror at revision %d, store at %d: listing from the store", self._revision, revision)
                return None
            return [dict(doc) for doc in self._docs.get(kind, {}).values()]

    def close(self) -> None:
        self._watcher.cancel()
        self._thread.join(5)
