"""What the apps want, kept between passes by scope, so that a pass after an event
derives again only what that event touched (Dragonflow's event-driven apps).

An app's entries are the union of its scopes' (apps/base.py: `scopes`,
`scope_entries`; a port, a network, a router, or the whole app). A full pass
(start, a cache reload) derives every scope of every app; a pass after events
asks each app which of its scopes each change touches (`affected`), derives
those again and compares them with what they gave last time: only the keys
whose entries came or went or changed are handed to the reconciler.

Two scopes may want one key (a floating IP's arp entry and a port's, a hash two
DNS names share): the first one to want it holds it, the others wait; when the
holder lets go, one of those that wait takes over.

Kept small at 100,000 ports (half a million entries): a scope remembers only which
keys it gave, since the value each holds is in `wanted` (or, for one that waits, in
`_waiting`), packed in one bytes object per scope for every app that has it (a
port is a scope of several apps), each key tagged with its app and map (`_record`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from .apps.base import App, Entry, LocalView

Owner = tuple[int, Hashable]  # (the app's position, its scope)
Encoded = list  # flat [map, key bytes, value bytes, map, key bytes, value bytes, …]
# which keys a scope gave, of every app that has it: for each, a tag byte naming its app and
# map, its length byte, the key
Record = bytes
Touched = dict[str, dict[bytes, "bytes | None"]]  # map -> key -> its wanted value before a pass changed it


@dataclass(frozen=True)
class Change:
    """One object that changed since the last pass. kind: an NB kind, or LOCAL_PORT (a tap
    appeared or went: old/new are its ifindex or None); old/new: the document before and
    now, None when it is new or gone."""

    kind: str
    obj_id: str
    old: Any
    new: Any

    def docs(self) -> tuple:
        """The document before and the one now, those that exist."""
        return tuple(d for d in (self.old, self.new) if d is not None)


LOCAL_PORT = "local_port"


class DesiredState:
    def __init__(self, apps: Sequence["App"], encode: Callable[["Entry"], tuple[bytes, bytes]]):
        self.apps = apps
        self._encode = encode
        self._records: dict[Hashable, Record] = {}  # scope -> the keys its apps gave
        self._tagged: list[tuple[int, str]] = []  # tag byte -> (the app's position, the map)
        # per app, map -> (its tag, its keys' length): what precedes a key in a record
        self._heads: list[dict[str, bytes]] = [{} for _ in apps]
        self.wanted: dict[str, dict[bytes, bytes]] = {}  # map -> key -> value: what the maps should hold
        # keys more than one scope wants: the scopes waiting behind the holder, with their values
        self._waiting: dict[tuple[str, bytes], dict[Owner, bytes]] = {}
        self.scopes_derived = 0  # scopes derived by the last rebuild/update: what tests count

    def _derive(self, view: "LocalView", index: int, scope: Hashable) -> Encoded:
        self.scopes_derived += 1
        encode, flat, seen = self._encode, [], set()
        for entry in self.apps[index].scope_entries(view, scope):
            key, value = encode(entry)
            name_key = (entry.map, key)
            if name_key not in seen:  # within a scope too, the first one holds a key
                seen.add(name_key)
                flat += (entry.map, key, value)
        return flat

    def _record(self, index: int, flat: Encoded) -> Record:
        """The keys of an app's entries in a scope, packed: a tuple of them would cost more
        than the keys."""
        parts, heads = [], self._heads[index]
        for i in range(0, len(flat), 3):
            name, key = flat[i], flat[i + 1]
            head = heads.get(name)
            if head is None or head[1] != len(key):  # a map's keys have one length: once per map
                head = self._head(index, name, len(key))
            parts += (head, key)
        return b"".join(parts)

    def _head(self, index: int, name: str, length: int) -> bytes:
        if (index, name) not in self._tagged:
            self._tagged.append((index, name))
        tag = self._tagged.index((index, name))
        if tag > 255 or length > 255:
            raise ValueError(f"map {name}: a key of {length} bytes, or more than 256 app maps, cannot be recorded")
        head = self._heads[index][name] = bytes((tag, length))
        return head

    def _split(self, index: int, record: Record) -> tuple[list[tuple[str, bytes]], Record]:
        """(map, key) of each entry the app at `index` recorded, in the order it gave them, and
        the rest of the record (the other apps')."""
        mine, rest, at = [], [], 0
        while at < len(record):
            end = at + 2 + record[at + 1]
            owner, name = self._tagged[record[at]]
            if owner == index:
                mine.append((name, record[at + 2:end]))
            else:
                rest.append(record[at:end])
            at = end
        return mine, b"".join(rest)

    def _value_of(self, owner: Owner, name: str, key: bytes) -> bytes:
        """The value `owner` wanted for a key it recorded: its own if it waits, else the held one."""
        waiting = self._waiting.get((name, key))
        if waiting is not None and owner in waiting:
            return waiting[owner]
        return self.wanted[name][key]

    def rebuild(self, view: "LocalView") -> dict[str, dict[bytes, bytes]]:
        """Derive every scope of every app (a full pass)."""
        for _ in self.rebuild_steps(view):
            pass
        return self.wanted

    def rebuild_steps(self, view: "LocalView") -> Iterator[set[str]]:
        """A full pass app by app: after each app, the maps it wants keys in, complete as far as
        this app and those before it go (so the reconciler can write them while the next
        app derives). `wanted` is a new state from this call on (the last one is what the
        reconciler compares it with), filled as the steps are taken."""
        self.scopes_derived = 0
        self._records = {}
        self.pending = [set() for _ in self.apps]
        self.wanted = {}
        self._waiting = {}
        return self._rebuild(view)

    def _rebuild(self, view: "LocalView") -> Iterator[set[str]]:
        wanted, waiting = self.wanted, self._waiting
        for index, app in enumerate(self.apps):
            names: set[str] = set()
            records = self._records
            for scope in app.scopes(view):
                encoded = self._derive(view, index, scope)
                if encoded:
                    record = self._record(index, encoded)
                    earlier = records.get(scope)  # the apps before this one that have the scope
                    records[scope] = earlier + record if earlier else record
                    for i in range(0, len(encoded), 3):  # _want(…, had=False), inline: 500,000 times
                        name, key = encoded[i], encoded[i + 1]
                        names.add(name)
                        keys = wanted.get(name)
                        if keys is None:
                            keys = wanted[name] = {}
                        if key in keys:
                            waiting.setdefault((name, key), {})[(index, scope)] = encoded[i + 2]
                        else:
                            keys[key] = encoded[i + 2]
            yield names

    def update(self, view: "LocalView", changes: Iterable[Change]) -> Touched:
        """Derive again the scopes these changes touch; the keys (by map) whose wanted value
        may have changed, each with its value before (None: it had none)."""
        self.scopes_derived = 0
        changes = list(changes)
        touched: Touched = {}
        for index, app in enumerate(self.apps):
            affected = {scope for change in changes for scope in app.affected(view, change)}
            self._rederive(view, index, affected, touched)
        return touched

    def _rederive(self, view: "LocalView", index: int, scopes: Iterable[Hashable], touched: Touched) -> None:
        for scope in scopes:
            owner = (index, scope)
            mine, others = self._split(index, self._records.pop(scope, b""))
            before = {(name, key): self._value_of(owner, name, key) for name, key in mine}
            new = self._derive(view, index, scope)
            record = others + self._record(index, new)
            if record:
                self._records[scope] = record
            for i in range(0, len(new), 3):
                name, key, value = new[i], new[i + 1], new[i + 2]
                had = (name, key) in before
                if before.pop((name, key), None) != value:
                    self._touch(touched, name, key)
                    self._want(owner, name, key, value, had=had)
            for name, key in before:  # what the scope no longer wants
                self._touch(touched, name, key)
                self._let_go(owner, name, key)

    def _touch(self, touched: Touched, name: str, key: bytes) -> None:
        """Note the key's wanted value before this pass changes it (the first time only)."""
        keys = touched.setdefault(name, {})
        if key not in keys:
            keys[key] = self.wanted.get(name, {}).get(key)

    def _want(self, owner: Owner, name: str, key: bytes, value: bytes, had: bool) -> None:
        """`owner` wants key → value; `had`: it wanted the key last time too."""
        wanted = self.wanted.setdefault(name, {})
        waiting = self._waiting.get((name, key))
        if key not in wanted:
            wanted[key] = value
        elif waiting is not None and owner in waiting:
            waiting[owner] = value
        elif had:  # the holder changed its value
            wanted[key] = value
        else:
            self._waiting.setdefault((name, key), {})[owner] = value

    def _let_go(self, owner: Owner, name: str, key: bytes) -> None:
        waiting = self._waiting.get((name, key))
        if waiting is not None and owner in waiting:
            del waiting[owner]
        elif waiting:  # the holder lets go: the first that waited takes over
            first = next(iter(waiting))
            self.wanted[name][key] = waiting.pop(first)
        else:
            self.wanted[name].pop(key, None)
        if waiting is not None and not waiting:
            del self._waiting[(name, key)]
