"""NB database drivers, selected by URL (see docs/architecture.md).

    memory://                      in-process, for tests
    sqlite:///PATH                 the embedded default, one node
    etcd://HOST:PORT[,HOST:PORT]   an etcd cluster, through etcd3gw
"""
from __future__ import annotations

from .base import KV, CompactedError, Compare, Delete, Event, Put, Store, StoreError, Watch

DEFAULT_URL = "sqlite:////var/lib/dfxdp/nb.db"


def open_store(url: str = DEFAULT_URL) -> Store:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreError(f"bad DB URL {url!r}: expected memory://, sqlite:///PATH or etcd://HOST:PORT")
    if scheme == "memory":
        from .memory import MemoryStore
        return MemoryStore(url)
    if scheme == "sqlite":
        from .sqlite import SqliteStore
        return SqliteStore(url)
    if scheme == "etcd":
        from .etcd import EtcdStore
        return EtcdStore(url)
    raise StoreError(f"unknown DB scheme {scheme!r} in {url!r}: use memory://, sqlite:///PATH or etcd://HOST:PORT")


__all__ = ["open_store", "DEFAULT_URL", "Store", "StoreError", "CompactedError", "KV", "Event",
           "Compare", "Put", "Delete", "Watch"]
