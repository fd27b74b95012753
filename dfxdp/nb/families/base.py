"""What a resource family gives the NB service: per kind, the rules run inside the
transaction of a create, an update or a delete, and the derived fields shown."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..index import references
from ..mirror import ShownFrom
from ..txn import Txn

if TYPE_CHECKING:  # the service composes the families
    from ..service import NBService


@dataclass(frozen=True)
class Hooks:
    """A kind's rules. create(txn, new) and update(txn, old, new) may change the document
    before it is stored and write others; delete(txn, old) runs before it goes; decorate(docs)
    fills fields derived from other objects (Neutron shows them, NB does not store them), and
    shown_from says which (the API server's copy redoes an object when one of them changes,
    dfxdp/nb/mirror.py)."""

    create: Callable[[Txn, dict], None] | None = None
    update: Callable[[Txn, dict, dict], None] | None = None
    delete: Callable[[Txn, dict], None] | None = None
    decorate: Callable[[list[dict]], None] | None = None
    shown_from: tuple[ShownFrom, ...] = ()


def children(kind: str, parent: str, reads: Callable[[dict], object] = lambda doc: doc) -> ShownFrom:
    """A decorate's read of the children of `kind` by parent (Txn.children_of)."""
    return ShownFrom(kind, lambda doc: [pid for named, pid in references(kind, doc) if named == parent], "id", reads)


def exists(doc: dict) -> bool:
    """What a decorate that only asks whether an object exists reads of it."""
    return True


class Family:
    """One resource family. `nb` is the service: its shared helpers (child objects,
    validation, key allocation) and the other families, for rules that cross them."""

    def __init__(self, nb: "NBService"):
        self.nb = nb

    def hooks(self) -> dict[str, Hooks]:
        return {}
