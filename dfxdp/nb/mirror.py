"""The API server's copy of the NB objects, for lists.

Listing a kind from the store reads and parses every object of it on every request: at
100,000 ports that is seconds of etcd range and JSON. A server instead keeps every NB
object in memory, fed by a watch (dfxdp/nb/watcher.py: a snapshot, then every change in
order, a new snapshot after a compaction). A list is never older than the request: it first
reads the revision of the last NB change (the mod revision of NB_REVISION, which every
transaction writing NB objects rewrites: one small read) and waits until the copy has applied
every transaction up to it; should it not catch up within WAIT_SECONDS (a broken watch), the
list is read from the store as before. Objects are kept as stored and parsed when first
listed after a change, so following the writes costs the server little; what a list makes of
them (sorted, derived fields filled) is kept until the next change and handed out shared, so
a page of a large list costs the copies of its own objects (dfxdp/nb/service.py), not a
derivation or a copy of the kind.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Callable

from .db.base import Store
from .txn import NB, NB_REVISION
from .watcher import Snapshot, Watcher

log = logging.getLogger(__name__)

WATCHED = NB.rstrip("/")  # the objects, and NB_REVISION
WAIT_SECONDS = 2.0


class Shown(list):
    """What a list made of a kind (dfxdp/nb/service.py `shown`), shared until the next change.
    place(id) finds an object's position, from an index made at its first call (a page's marker
    among 100,000 objects: a dict lookup, not a walk over scattered objects)."""

    _places: dict[str, int] | None = None

    def place(self, obj_id: str) -> int | None:
        if self._places is None:  # two threads may both make it: the same dict, no harm
            self._places = {doc["id"]: index for index, doc in enumerate(self)}
        return self._places.get(obj_id)


class Mirror:
    def __init__(self, store: Store):
        self.store = store
        self._raw: dict[str, dict[str, bytes]] = {}  # kind -> id -> the object as stored
        self._parsed: dict[str, dict[str, dict]] = {}  # kind -> id -> the object, once listed
        self._revision = 0  # every transaction up to this one is applied
        self._shown: dict[str, tuple[int, list[dict]]] = {}  # kind -> (revision, what shown() made)
        self._changed = threading.Condition()
        self._watcher = Watcher(store, WATCHED)
        self._thread = threading.Thread(target=self._follow, name="nb-mirror", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for item in self._watcher:
                with self._changed:
                    if isinstance(item, Snapshot):
                        self._raw, self._parsed = {}, {}
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
        self._parsed.get(kind, {}).pop(obj_id, None)
        if value is None:
            self._raw.get(kind, {}).pop(obj_id, None)
        else:
            self._raw.setdefault(kind, {})[obj_id] = value

    def list(self, kind: str, shown: Callable[[list[dict]], list[dict]]) -> Shown | None:
        """shown(every object of kind as of now), made once per change, or None when the copy
        could not catch up with the store. Shared by every caller until the next change: read
        it, never change it or its objects (copy what you hand out). shown may read the store:
        NB objects it reads change the revision too."""
        marker = self.store.get(NB_REVISION)
        revision = marker.mod_revision if marker else 0
        with self._changed:
            if not self._changed.wait_for(lambda: self._revision >= revision, timeout=WAIT_SECONDS):
                log.warning("NB mirror at revision %d, NB at %d: listing from the store", self._revision, revision)
                return None
            made = self._shown.get(kind)
            if made is None or made[0] != self._revision:
                parsed = self._parsed.setdefault(kind, {})
                for obj_id, value in self._raw.get(kind, {}).items():
                    if obj_id not in parsed:
                        parsed[obj_id] = json.loads(value)
                made = self._revision, Shown(shown([dict(doc) for doc in parsed.values()]))
                self._shown[kind] = made
            return made[1]

    def close(self) -> None:
        self._watcher.cancel()
        self._thread.join(5)
