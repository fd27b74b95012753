"""etcd://HOST:PORT[,HOST:PORT…] — an etcd v3 cluster through etcd3gw (the JSON gateway).

KV reads, transactions and compaction go through etcd3gw's client. Watches read
the gateway's stream ourselves: etcd3gw's watcher hides both a dropped stream
and a compaction notice, and an agent must see both (resume from the next
revision after a disconnect, resync fully after a compaction).
"""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from typing import Any, Callable, Iterator, Sequence

import requests

from .base import KV, CompactedError, Compare, Event, Op, Put, Store, StoreError, Watch, mark_complete

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _eventlet_hidden() -> Iterator[None]:
    """While in it, `import eventlet` fails (unless eventlet is loaded already).

    etcd3gw's utils and futurist, which it imports, try `import eventlet` only to learn whether
    it is installed, for green executors in a monkey-patched process, which dfxdp never is (its
    watch stream is read by its own thread, below); eventlet in turn imports dnspython and
    pyOpenSSL: 0.2-0.5 s of every agent's start on a loaded machine. Afterwards eventlet imports
    as usual (os-ken's OVS fallback needs it)."""
    if "eventlet" in sys.modules:  # loaded already (the fallback came first): nothing to save
        yield
        return
    sys.modules["eventlet"] = None  # None in sys.modules makes an import raise ImportError
    try:
        yield
    finally:
        del sys.modules["eventlet"]


with _eventlet_hidden():
    from etcd3gw import exceptions as etcd_exc
    from etcd3gw.client import Etcd3Client
    from etcd3gw.utils import _decode, _encode, _increment_last_byte

REQUEST_TIMEOUT = 10
RECONNECT_BACKOFF_MAX = 2.0
# reads per transaction in get_many: etcd's default --max-txn-ops (a server may allow more)
READS_PER_TXN = 128
WATCH_CHUNK_BYTES = 1 << 16  # at most this much read at once; a chunked stream yields each chunk as it comes


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    rest = url[len("etcd://"):].strip("/")
    endpoints = []
    for part in filter(None, rest.split(",")):
        host, sep, port = part.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise StoreError(f"bad etcd endpoint {part!r} in {url!r}: expected HOST:PORT")
        endpoints.append((host.strip("[]"), int(port)))
    if not endpoints:
        raise StoreError(f"bad DB URL {url!r}: expected etcd://HOST:PORT[,HOST:PORT…]")
    return endpoints


def _key(key: str) -> str:
    """A key as the gateway wants it: base64 of its UTF-8 bytes."""
    return _encode(key.encode())


def _kv(raw: dict) -> KV:
    value = raw.get("value")  # the gateway omits empty values
    return KV(_decode(raw["key"]).decode(), _decode(value) if value else b"",
              int(raw.get("create_revision", 0)), int(raw.get("mod_revision", 0)))


def _event(raw: dict) -> Event:
    kv = raw["kv"]
    revision = int(kv["mod_revision"])
    if raw.get("type") == "DELETE":  # PUT is the default, omitted in JSON
        return Event("delete", _decode(kv["key"]).decode(), None, revision)
    parsed = _kv(kv)
    return Event("put", parsed.key, parsed.value, revision)


def _lines(resp: requests.Response) -> Iterator[bytes]:
    """The stream's lines (one watch response each), as they arrive. Linear in a line's size:
    requests' iter_lines joins every chunk to what is pending, quadratic in a large line (the
    events of a bulk transaction, megabytes), so a watcher would fall behind for minutes."""
    parts: list[bytes] = []
    for chunk in resp.iter_content(chunk_size=WATCH_CHUNK_BYTES):
        while True:
            end = chunk.find(b"\n")
            if end < 0:
                parts.append(chunk)
                break
            parts.append(chunk[:end])
            yield b"".join(parts)
            parts, chunk = [], chunk[end + 1:]
    if parts:
        yield b"".join(parts)


class _EtcdWatch(Watch):
    def __init__(self, store: "EtcdStore", prefix: str, start_revision: int):
        self._store, self._prefix, self._next = store, prefix, start_revision
        self._cancelled = threading.Event()
        self._response: requests.Response | None = None
        self._lock = threading.Lock()

    def _open(self) -> requests.Response:
        request = {"create_request": {"key": _key(self._prefix),
                                      "range_end": _key(_increment_last_byte(self._prefix)),
                                      "start_revision": self._next}}

        def call(client: Etcd3Client) -> requests.Response:
            resp = client.session.post(client.get_url("/watch"), json=request, stream=True,
                                       timeout=(REQUEST_TIMEOUT, None))
            resp.raise_for_status()
            return resp

        return self._store._with_failover(call)

    def __iter__(self) -> Iterator[Event]:
        backoff = 0.05
        while not self._cancelled.is_set():
            try:
                resp = self._open()
            except StoreError as exc:
                log.warning("etcd watch on %s: %s; retrying", self._prefix, exc)
                self._cancelled.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX)
                continue
            with self._lock:
                self._response = resp
            if self._cancelled.is_set():
                resp.close()
                return
            try:
                for line in _lines(resp):
                    if not line.strip():
                        continue
                    result = json.loads(line).get("result", {})
                    if int(result.get("compact_revision", 0)):
                        raise CompactedError(int(result["compact_revision"]) - 1)
                    for event in mark_complete([_event(raw) for raw in result.get("events", [])]):
                        self._next = event.revision + 1
                        backoff = 0.05
                        yield event
            except (requests.RequestException, ValueError, AttributeError) as exc:
                if not self._cancelled.is_set():
                    log.info("etcd watch on %s dropped (%s); resuming at %d", self._prefix, exc, self._next)
            finally:
                resp.close()
            if not self._cancelled.is_set():
                self._cancelled.wait(backoff)  # stream ended: etcd restarting or failing over

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            resp = self._response
        if resp is not None:
            try:  # unblock a reader stuck in recv()
                resp.raw._fp.fp.raw._sock.shutdown(2)
            except Exception:  # noqa: BLE001 - best effort: the stream may be gone already
                pass
            resp.close()


def _session() -> requests.Session:
    """A keep-alive session that does not consult the environment on every call: requests
    otherwise scans os.environ for proxy settings (and reads ~/.netrc) per request, about a
    third of a millisecond of CPU, and a create makes several. An etcd cluster is reached
    directly, never through a web proxy."""
    session = requests.Session()
    session.trust_env = False
    return session


class EtcdStore(Store):
    def __init__(self, url: str):
        self.url = url
        self._clients = [Etcd3Client(host, port, api_path="/v3/", timeout=REQUEST_TIMEOUT, session=_session())
                         for host, port in parse_endpoints(url)]
        self._current = 0
        self._lock = threading.Lock()

    def _with_failover(self, call: Callable[[Etcd3Client], Any]) -> Any:
        """Run call on the current endpoint, moving to the next ones on connection errors."""
        errors = []
        for attempt in range(len(self._clients)):
            with self._lock:
                index = (self._current + attempt) % len(self._clients)
            client = self._clients[index]
            try:
                result = call(client)
            except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError,
                    requests.ConnectionError, requests.Timeout) as exc:
                errors.append(f"{client.host}:{client.port}: {type(exc).__name__}")
                continue
            except etcd_exc.Etcd3Exception as exc:
                raise StoreError(f"etcd {client.host}:{client.port} refused the request: {exc}") from exc
            except requests.HTTPError as exc:
                raise StoreError(f"etcd {client.host}:{client.port}: {exc}") from exc
            with self._lock:
                self._current = index
            return result
        raise StoreError("no etcd endpoint reachable (" + "; ".join(errors) + ")")

    def _post(self, path: str, body: dict) -> dict:
        return self._with_failover(lambda c: c.post(c.get_url(path), json=body))

    def get(self, key: str) -> KV | None:
        kvs = self._post("/kv/range", {"key": _key(key)}).get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    def count(self, prefix: str) -> tuple[int, int]:
        resp = self._post("/kv/range", {"key": _key(prefix), "range_end": _key(_increment_last_byte(prefix)),
                                        "count_only": True})
        return int(resp.get("count", 0)), int(resp["header"]["revision"])

    def get_many(self, keys: Sequence[str]) -> list[KV | None]:
        """One transaction of range requests per READS_PER_TXN keys (each at one revision)."""
        found: dict[str, KV] = {}
        for start in range(0, len(keys), READS_PER_TXN):
            reads = [{"request_range": {"key": _key(key)}} for key in keys[start:start + READS_PER_TXN]]
            resp = self._post("/kv/txn", {"compare": [], "success": reads})
            for answer in resp.get("responses", []):
                for raw in answer.get("response_range", {}).get("kvs", []):
                    kv = _kv(raw)
                    found[kv.key] = kv
        return [found.get(key) for key in keys]

    def range(self, prefix: str) -> tuple[list[KV], int]:
        # etcd returns a range in ascending key order; a sort_order, even that one, costs a sort
        resp = self._post("/kv/range", {"key": _key(prefix), "range_end": _key(_increment_last_byte(prefix))})
        return [_kv(raw) for raw in resp.get("kvs", [])], int(resp["header"]["revision"])

    def range_pages(self, prefix: str, page_size: int = 1000) -> tuple[Iterator[list[KV]], int]:
        """Pages of `page_size` keys in key order, all at the first page's revision. No
        sort_order: etcd (3.4) applies `limit` only to an unsorted range, and reads the whole
        rest of the range for every sorted page (100,000 ports: 77 s of pages instead of 9)."""
        end = _key(_increment_last_byte(prefix))
        first = self._post("/kv/range", {"key": _key(prefix), "range_end": end, "limit": page_size})
        revision = int(first["header"]["revision"])

        def pages() -> Iterator[list[KV]]:
            resp = first
            while True:
                kvs = [_kv(raw) for raw in resp.get("kvs", [])]
                yield kvs
                if not resp.get("more") or not kvs:
                    return
                resp = self._post("/kv/range", {"key": _key(kvs[-1].key + "\0"), "range_end": end,
                                                "limit": page_size, "revision": revision})
        return pages(), revision

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> int | None:
        body = {
            "compare": [{"key": _key(c.key), "result": c.result.upper(), "target": "MOD",
                         "mod_revision": c.mod_revision} for c in compares],
            "success": [{"request_put": {"key": _key(op.key), "value": _encode(op.value)}}
                        if isinstance(op, Put) else {"request_delete_range": {"key": _key(op.key)}}
                        for op in ops],
        }
        resp = self._post("/kv/txn", body)
        if not resp.get("succeeded"):  # the gateway omits false
            return None
        return int(resp["header"]["revision"])

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return _EtcdWatch(self, prefix, start_revision)

    def revision(self) -> int:
        return int(self._post("/kv/range", {"key": _key("\0"), "count_only": True})["header"]["revision"])

    def compact(self, revision: int) -> None:
        self._post("/kv/compaction", {"revision": revision, "physical": True})

    def close(self) -> None:
        for client in self._clients:
            client.session.close()

