"""The documents of one NB kind by its declared indexes (dfxdp/nb/kinds.py), so a lookup
costs the documents found, not every document of the kind.

One structure serves every lookup apps make: `view.find(kind, index, value)`,
`view.ports_by(index, value)` and friends (controller/apps/base.py). The agent's
cache keeps one per kind up to date event by event (controller/cache.py); a view
built by hand (tests, the bench) gets one built from its documents on first use.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from dfxdp.nb import kinds

_NONE: Mapping[str, dict] = {}


def _filed(key: Any) -> bool:
    """Is a document filed under this key? Not under None, "" or a tuple of only those."""
    if type(key) is tuple:
        return any(part is not None and part != "" for part in key)
    return key is not None and key != ""


class KindIndex:
    def __init__(self, kind: kinds.Kind) -> None:
        self.kind = kind
        # index name -> key -> id -> document; a document without the field (None, "") is filed
        # under no key (_filed): most ports have no device owner, and 100,000 under None cost MiBs
        self.by: dict[str, dict[Any, dict[str, dict]]] = {index.name: {} for index in kind.indexes}

    @classmethod
    def of(cls, kind: kinds.Kind, docs: Iterable[dict]) -> "KindIndex":
        index = cls(kind)
        for doc in docs:
            index.add(doc)
        return index

    def _keys(self, doc: dict) -> Iterable[tuple[dict, Any]]:
        for index in self.kind.indexes:
            table = self.by[index.name]
            for key in index.keys(doc):
                if _filed(key):
                    yield table, key

    def add(self, doc: dict) -> None:
        for table, key in self._keys(doc):
            table.setdefault(key, {})[doc["id"]] = doc

    def remove(self, doc: dict) -> None:
        for table, key in self._keys(doc):
            filed = table.get(key)
            if filed is not None:
                filed.pop(doc["id"], None)
                if not filed:
                    del table[key]

    def filed(self, index: str, key: Any) -> Mapping[str, dict]:
        """id -> document of those filed under `key`: the index's own (read it while the cache
        holds still, as a pass does; copy it anywhere else)."""
        return self.by[index].get(key, _NONE)

    def find(self, index: str, key: Any) -> list[dict]:
        """The documents filed under `key`, a copy (the punt thread reads while the cache changes)."""
        return list(self.by[index].get(key, _NONE).values())

    def ids(self, index: str, key: Any) -> list[str]:
        return list(self.by[index].get(key, _NONE))


def indexes_of(objects: Mapping[str, Mapping[str, dict]]) -> dict[str, KindIndex]:
    """A KindIndex for every listed kind that declares indexes, over `objects` (kind -> id -> doc)."""
    return {kind.name: KindIndex.of(kind, list(objects.get(kind.name, {}).values()))
            for kind in kinds.KINDS if kind.indexes}
