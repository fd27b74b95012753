"""What a resource family gives the NB service: per kind, the rules run inside the
transaction of a create, an update or a delete, and the derived fields shown."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..txn import Txn

if TYPE_CHECKING:  # the service composes the families
    from ..service import NBService


@dataclass(frozen=True)
class Hooks:
    """A kind's rules. create(txn, new) and update(txn, old, new) may change the document
    before it is stored and write others; delete(txn, old) runs before it goes; decorate(docs)
    fills fields derived from other objects (Neutron shows them, NB does not store them)."""

    create: Callable[[Txn, dict], None] | None = None
    update: Callable[[Txn, dict, dict], None] | None = None
    delete: Callable[[Txn, dict], None] | None = None
    decorate: Callable[[list[dict]], None] | None = None


class Family:
    """One resource family. `nb` is the service: its shared helpers (child objects,
    validation, key allocation) and the other families, for rules that cross them."""

    def __init__(self, nb: "NBService"):
        self.nb = nb

    def hooks(self) -> dict[str, Hooks]:
        return {}
