"""The API server's copy of the NB objects, for lists.

Listing a kind from the store reads and parses every object of it on every request: at
100,000 ports that is seconds of etcd range and JSON. A server instead keeps every NB
object in memory, fed by a watch (dfxdp/nb/watcher.py: a snapshot, then every change in
order, a new snapshot after a compaction). A list is never older than the request: it first
reads the revision of the last NB change (the mod revision of NB_REVISION, which every
transaction writing NB objects rewrites: one small read) and waits until the copy has applied
every transaction up to it; should it not catch up within WAIT_SECONDS (a broken watch), the
list is read from the store as before.

Objects are kept as stored; a kind is made into what lists show (parsed, derived fields
filled, in the stored order) at its first list, and from then on kept so object by object: a
list after a change redoes only the objects that changed and those whose derived fields read
one that changed (the kinds each decorate reads, `ShownFrom`: a port's binding with its
chassis, a network's subnets with its subnets), and places them in the order by bisection
rather than sorting the kind again. What a list hands out is a copy of that order (pointers:
a fraction of a millisecond at 100,000), shared by every caller until the next change; a
page's marker is found in it by bisection on the marker's place in the order. Each object's
JSON is rendered when it is made and kept beside it in the order: a list answer joins them.
"""
from __future__ import annotations

import bisect
import gc
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson

from .db.base import Store
from .render import to_json
from .txn import NB, NB_REVISION
from .watcher import Snapshot, Watcher

log = logging.getLogger(__name__)

WATCHED = NB.rstrip("/")  # the objects, and NB_REVISION
WAIT_SECONDS = 2.0
# a (re)make of this many objects or more: what is alive is moved out of the cyclic collector's
# walks (gc.freeze). 100,000 ports are over a million tracked objects that live until changed; a
# full collection walking them stalls the server 1-3 s at a random later request, and the docs
# hold no cycles (refcounting still frees them when they are replaced).
FREEZE_AT = 10_000
# more changed objects than this share of a kind since its last list: the kind is sorted anew
# rather than each placed by bisection (a list insert moves the pointers after it)
RESORT_SHARE = 1 / 32

Decorate = Callable[[str, list[dict]], None]  # fills the derived fields of objects of a kind, in place


@dataclass(frozen=True)
class ShownFrom:
    """Objects of `kind` that a kind's decorate reads. A change of one (created, deleted, or
    changed in what `reads` picks of it) has the decorated objects it concerns made anew:
    those whose `field` holds one of names(it), or every one when `field` is None."""

    kind: str
    names: Callable[[dict], Iterable[str | None]] = lambda doc: ()
    field: str | None = "id"
    reads: Callable[[dict], Any] = lambda doc: doc


def order_key(doc: dict) -> tuple[str, str]:
    """A list's stored order: creation, then id (created_at has whole seconds)."""
    return doc.get("created_at") or "", doc["id"]


def _parse(value: bytes) -> dict:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:  # what orjson refuses and the json module writes (NaN, big integers)
        return json.loads(value)


class Shown(list):
    """What lists show of a kind, in the stored order: shared until the next change (read it,
    never change it or its objects), with each object's JSON (`rendered`, in the same order; a
    slice keeps them). place(id) finds an object's position by bisection on its place in the
    order."""

    def __init__(self, docs: list[dict], rendered: list[bytes], current: dict[str, dict]):
        super().__init__(docs)
        self.rendered = rendered
        self._current = current  # the mirror's id -> doc, for an object's place in the order

    def __getitem__(self, index):
        if isinstance(index, slice):  # a page
            return Shown(list.__getitem__(self, index), self.rendered[index], self._current)
        return list.__getitem__(self, index)

    def place(self, obj_id: str) -> int | None:
        doc = self._current.get(obj_id)  # its order key never changes (created_at, id)
        if doc is not None:
            index = bisect.bisect_left(self, order_key(doc), key=order_key)
            if index < len(self) and self[index]["id"] == obj_id:
                return index
        # created or deleted since this copy was made
        return next((index for index, shown in enumerate(self) if shown["id"] == obj_id), None)


class _Kind:
    """What the mirror made of one kind for lists (under the mirror's lock)."""

    def __init__(self, ids: Iterable[str]):
        self.docs: dict[str, dict] = {}  # id -> the object as shown; never changed, replaced
        self.order: list[dict] = []  # docs in the stored order
        self.rendered: list[bytes] = []  # their JSON, in the same order
        self.json: dict[str, bytes] = {}  # id -> its doc's JSON
        self.dirty: set[str] = set(ids)  # to be made anew: changed, or what they show changed
        self.by_field: dict[str, dict[str, set[str]]] = {}  # a ShownFrom's field -> value -> ids
        self.shown: Shown | None = None  # handed out until the next change


class Mirror:
    def __init__(self, store: Store, decorate: Decorate = lambda kind, docs: None,
                 shown_from: dict[str, Iterable[ShownFrom]] | None = None):
        """decorate(kind, docs) fills derived fields (it may read the store: NB objects it
        reads change the revision too); shown_from: per decorated kind, what its decorate reads."""
        self.store = store
        self._decorate = decorate
        self._fields = {kind: {s.field for s in sources if s.field not in (None, "id")}
                        for kind, sources in (shown_from or {}).items()}
        self._dependents: dict[str, list[tuple[str, ShownFrom]]] = {}  # kind read -> (decorated kind, how)
        for kind, sources in (shown_from or {}).items():
            for source in sources:
                self._dependents.setdefault(source.kind, []).append((kind, source))
        self._raw: dict[str, dict[str, bytes]] = {}  # kind -> id -> the object as stored
        self._kinds: dict[str, _Kind] = {}  # kinds listed so far
        self._revision = 0  # every transaction up to this one is applied
        self._changed = threading.Condition()
        self._watcher = Watcher(store, WATCHED)
        self._thread = threading.Thread(target=self._follow, name="nb-mirror", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for item in self._watcher:
                with self._changed:
                    if isinstance(item, Snapshot):
                        self._raw, self._kinds = {}, {}
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
        objects = self._raw.setdefault(kind, {})
        old = objects.pop(obj_id, None)
        if value is not None:
            objects[obj_id] = value
        if kind in self._kinds:
            self._kinds[kind].dirty.add(obj_id)
        for decorated, source in self._dependents.get(kind, ()):
            if decorated in self._kinds:
                self._redo(self._kinds[decorated], source, old and _parse(old), value and _parse(value))

    def _redo(self, made: _Kind, source: ShownFrom, old: dict | None, new: dict | None) -> None:
        """Mark what a change of an object that decorated objects read concerns."""
        names = {tuple(source.names(doc)) if doc else () for doc in (old, new)}
        if old and new and len(names) == 1 and source.reads(old) == source.reads(new):
            return  # nothing they show of it changed (a chassis' heartbeat)
        if source.field is None:
            made.dirty.update(made.docs)
            return
        for name in {name for group in names for name in group if name}:
            if source.field == "id":
                made.dirty.add(name)
            else:
                made.dirty.update(made.by_field.get(source.field, {}).get(name, ()))

    def list(self, kind: str) -> Shown | None:
        """Every object of kind as lists show it, as of now, or None when the copy could not
        catch up with the store. Shared by every caller until the next change: read it, never
        change it or its objects (copy what you hand out)."""
        marker = self.store.get(NB_REVISION)
        revision = marker.mod_revision if marker else 0
        with self._changed:
            if not self._changed.wait_for(lambda: self._revision >= revision, timeout=WAIT_SECONDS):
                log.warning("NB mirror at revision %d, NB at %d: listing from the store", self._revision, revision)
                return None
            made = self._kinds.get(kind)
            if made is None:
                made = self._kinds[kind] = _Kind(self._raw.get(kind, {}))
            if made.dirty or made.shown is None:
                self._remake(kind, made)
                made.shown = Shown(made.order, made.rendered, made.docs)
            return made.shown

    def _remake(self, kind: str, made: _Kind) -> None:
        """Make the dirty objects of a kind anew and put them in their place in the order."""
        changed, stored = made.dirty, self._raw.get(kind, {})
        new = [_parse(stored[obj_id]) for obj_id in changed if obj_id in stored]
        self._decorate(kind, new)  # may fail (the store unreachable): nothing is changed before it
        made.dirty = set()
        gone = [made.docs.pop(obj_id) for obj_id in changed if obj_id in made.docs]
        for field in self._fields.get(kind, ()):
            index = made.by_field.setdefault(field, {})
            for doc in gone:
                index.get(doc.get(field), set()).discard(doc["id"])
            for doc in new:
                if doc.get(field):
                    index.setdefault(doc[field], set()).add(doc["id"])
        for doc in gone:
            del made.json[doc["id"]]
        made.docs.update((doc["id"], doc) for doc in new)
        made.json.update((doc["id"], to_json(doc)) for doc in new)  # rendered once, not at every list
        if len(changed) > len(made.docs) * RESORT_SHARE or not self._place(made, gone, new):
            made.order = sorted(made.docs.values(), key=order_key)
            made.rendered = [made.json[doc["id"]] for doc in made.order]
        if len(new) >= FREEZE_AT:
            gc.freeze()

    @staticmethod
    def _place(made: _Kind, gone: list[dict], new: list[dict]) -> bool:
        """Take the gone objects out of the order and put the new ones in (False: the order
        did not hold what it should, sort it anew)."""
        order = made.order
        for doc in gone:
            index = bisect.bisect_left(order, order_key(doc), key=order_key)
            if index == len(order) or order[index] is not doc:
                return False
            del order[index], made.rendered[index]
        for doc in new:
            index = bisect.bisect_right(order, order_key(doc), key=order_key)
            order.insert(index, doc)
            made.rendered.insert(index, made.json[doc["id"]])
        return True

    def close(self) -> None:
        self._watcher.cancel()
        self._thread.join(5)
