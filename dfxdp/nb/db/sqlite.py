"""sqlite:///PATH — the embedded default: etcd semantics on one file.

Several processes share the file (the API server and a local agent): WAL mode
lets readers run beside the one writer, BEGIN IMMEDIATE serialises writers,
and the `events` table is the watch history every process polls.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
from typing import Iterator, Sequence

from .base import KV, CompactedError, Compare, Delete, Event, Op, Put, Store, StoreError, Watch, mark_complete

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL,
                               create_rev INTEGER NOT NULL, mod_rev INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (rev INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL,
                                   key TEXT NOT NULL, value BLOB, PRIMARY KEY (rev, seq));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 1), ('compacted', 0);
"""
POLL_INTERVAL = 0.02  # how often a watch looks for writes by other processes
KEYS_PER_SELECT = 500  # below sqlite's limit of variables in one statement (999 in old builds)


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"


class _SqliteWatch(Watch):
    def __init__(self, store: "SqliteStore", prefix: str, start_revision: int):
        self._store, self._prefix, self._next = store, prefix, start_revision
        self._cancelled = threading.Event()

    def __iter__(self) -> Iterator[Event]:
        conn = self._store._connect()
        try:
            while not self._cancelled.is_set():
                compacted = conn.execute("SELECT value FROM meta WHERE name='compacted'").fetchone()[0]
                if self._next <= compacted:
                    raise CompactedError(compacted)
                rows = conn.execute(
                    "SELECT rev, type, key, value FROM events WHERE rev >= ? AND key >= ? AND key < ?"
                    " ORDER BY rev, seq", (self._next, self._prefix, _prefix_end(self._prefix))).fetchall()
                for event in mark_complete([Event(kind, key, value, rev) for rev, kind, key, value in rows]):
                    if self._cancelled.is_set():
                        return
                    self._next = event.revision + 1
                    yield event
                if not rows:
                    self._store._changed.wait(POLL_INTERVAL)
        finally:
            conn.close()

    def cancel(self) -> None:
        self._cancelled.set()


def _store_errors(method):
    """sqlite's own errors (locked past the timeout, I/O, a damaged file) surface as
    StoreError, which the API answers with 503 like an unreachable etcd."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite DB {self.path}: {exc}") from exc
    return wrapper


class SqliteStore(Store):
    def __init__(self, url: str):
        self.url = url
        path = url[len("sqlite://"):]
        if not path.startswith("/"):
            raise StoreError(f"bad DB URL {url!r}: use sqlite:///ABSOLUTE/PATH (three slashes then the path)")
        self.path = path
        try:
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            conn = self._connect()
            conn.executescript(SCHEMA)
            conn.close()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open sqlite DB at {path}: {exc}") from exc
        self._local = threading.local()
        self._changed = threading.Event()  # wakes same-process watches early

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _notify(self) -> None:
        self._changed.set()
        self._changed.clear()

    @_store_errors
    def get(self, key: str) -> KV | None:
        row = self._conn().execute("SELECT key, value, create_rev, mod_rev FROM kv WHERE key=?", (key,)).fetchone()
        return KV(*row) if row else None

    @_store_errors
    def count(self, prefix: str) -> tuple[int, int]:
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot for the count and the revision
        try:
            count = conn.execute("SELECT count(*) FROM kv WHERE key >= ? AND key < ?",
                                 (prefix, _prefix_end(prefix))).fetchone()[0]
            rev = conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()[0]
        finally:
            conn.execute("COMMIT")
        return count, rev

    @_store_errors
    def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        conn = self._conn()
        found: dict[str, KV] = {}
        conn.execute("BEGIN")  # one snapshot for all of them
        try:
            for start in range(0, len(keys), KEYS_PER_SELECT):
                chunk = keys[start:start + KEYS_PER_SELECT]
                rows = conn.execute("SELECT key, value, create_rev, mod_rev FROM kv WHERE key IN"
                                    f" ({','.join('?' * len(chunk))})", list(chunk)).fetchall()
                found.update((row[0], KV(*row)) for row in rows)
        finally:
            conn.execute("COMMIT")
        return [found.get(key) for key in keys]

    @_store_errors
    def range(self, prefix: str) -> tuple[list[KV], int]:
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot for the rows and the revision
        try:
            rows = conn.execute("SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? AND key < ?"
                                " ORDER BY key", (prefix, _prefix_end(prefix))).fetchall()
            rev = conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()[0]
        finally:
            conn.execute("COMMIT")
        return [KV(*r) for r in rows], rev

    @_store_errors
    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int | None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for c in compares:
                row = conn.execute("SELECT mod_rev FROM kv WHERE key=?", (c.key,)).fetchone()
                if not c.holds(row[0] if row else 0):
                    conn.execute("ROLLBACK")
                    return None
            rev = conn.execute("SELECT value FROM meta WHERE name='revision'").fetchone()[0]
            if not ops:
                conn.execute("COMMIT")
                return rev
            rev += 1
            for seq, op in enumerate(ops):
                if isinstance(op, Put):
                    conn.execute("INSERT INTO kv VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                                 " value=excluded.value, mod_rev=excluded.mod_rev", (op.key, op.value, rev, rev))
                    conn.execute("INSERT INTO events VALUES (?, ?, 'put', ?, ?)", (rev, seq, op.key, op.value))
                elif isinstance(op, Delete):
                    if conn.execute("DELETE FROM kv WHERE key=?", (op.key,)).rowcount:
                        conn.execute("INSERT INTO events VALUES (?, ?, 'delete', ?, NULL)", (rev, seq, op.key))
            conn.execute("UPDATE meta SET value=? WHERE name='revision'", (rev,))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the failure may have ended the transaction
                conn.execute("ROLLBACK")
            raise
        self._notify()
        return rev

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return _SqliteWatch(self, prefix, start_revision)

    @_store_errors
    def revision(self) -> int:
        return self._conn().execute("SELECT value FROM meta WHERE name='revision'").fetchone()[0]

    @_store_errors
    def compact(self, revision: int) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM events WHERE rev < ?", (revision,))
        conn.execute("UPDATE meta SET value=max(value, ?) WHERE name='compacted'", (revision - 1,))
        conn.execute("COMMIT")
        self._notify()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

