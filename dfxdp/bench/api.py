"""The API at scale, on a real etcd behind a real `dfxdp server` (`dfxdp bench --parts api`):

- bulk create: `POST /v2.0/ports` with `{"ports": [...]}` of BULK ports, one request at a time,
  into networks of PORTS_PER_NETWORK ports (a /22 each, as the control part lays them out):
  ports per second of request time;
- single creates: `POST /v2.0/ports` of one port, CLIENTS clients at once (threads, each its own
  connection) into a network of their own: ports per second of wall time;
- list: `GET /v2.0/ports` of every port (seconds at the client: request, server and transfer,
  and then the client's parse, apart: a client's choice, timed with Python's json module and
  with orjson; best of LIST_RUNS), and once more right after a write;
- pages: `GET /v2.0/ports?limit=100`, the first page, one from the middle (by marker) and one
  from three quarters; after the single creates the first page (what the server's copy redoes
  after 1,000 creates), then the first page right after one more create and a page by marker
  right after another (what it redoes after one).

Each size in turn grows one NB (`--ports 10000,100000`). On its own:
    python -m dfxdp.bench.api --ports 100000
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import orjson
import requests

from dfxdp.nb.model import DEFAULT_PROJECT
from dfxdp.testing.etcd import EtcdServer, free_port

PORTS_PER_NETWORK = 800
BULK = 400
LIST_RUNS = 2
PAGE = 100
CLIENTS = 4
SINGLES = 1000  # single creates per size, over all clients
NETWORKS_FROM = ipaddress.ip_address("10.64.0.0")
SINGLES_FROM = ipaddress.ip_address("10.128.0.0")  # their networks: a /20 each, away from the bulk's


@dataclass
class ApiPoint:
    ports: int                       # ports listed (with the networks' DHCP ports and the single creates)
    bulk_create_per_second: float
    single_create_per_second: float  # CLIENTS clients at once
    clients: int
    list_seconds: float              # request, server, transfer (to the last byte)
    list_parse_seconds: float        # the client's json.loads of the answer
    list_parse_orjson_seconds: float  # the client's orjson.loads of it
    list_megabytes: float
    first_page_seconds: float
    middle_page_seconds: float       # the first page by marker
    next_marker_page_seconds: float  # another page by marker
    page_after_creates_seconds: float  # the first page after the single creates and one more
    page_after_write_seconds: float  # the first page right after one create
    marker_page_after_write_seconds: float  # a page by marker right after one create
    list_after_write_seconds: float  # every port, right after one create (to the last byte)


def _ok(response: requests.Response) -> dict:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}")
    return response.json()


@contextlib.contextmanager
def _server(db_url: str) -> Iterator[str]:
    """A `dfxdp server` on db_url, on a free loopback port: its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "dfxdp.cli.main", "server", "--db", db_url,
                             "--listen", url.removeprefix("http://")], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url + "/", timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("dfxdp server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _plan(sizes: list[int]) -> list[list[tuple[bool, int]]]:
    """Per size, the bulk requests that grow NB to it: (in a new network?, ports)."""
    plan, made, room = [], 0, 0
    for size in sizes:
        bulks = []
        while made < size:
            new_network, room = not room, room or PORTS_PER_NETWORK
            count = min(BULK, room, size - made)
            bulks.append((new_network, count))
            made, room = made + count, room - count
        plan.append(bulks)
    return plan


def steps(sizes: list[int]) -> int:
    """How many times measure() calls its step: once per bulk request, four more per size."""
    return sum(len(bulks) + 4 for bulks in _plan(sizes))


class _Api:
    def __init__(self, url: str):
        self.base = url + "/v2.0"
        self.session = requests.Session()

    def post(self, path: str, body: dict, session: requests.Session | None = None) -> dict:
        return _ok((session or self.session).post(f"{self.base}/{path}", json=body))

    def network(self, name: str, cidr: str) -> str:
        net = self.post("networks", {"network": {"name": name}})["network"]
        self.post("subnets", {"subnet": {"network_id": net["id"], "cidr": cidr, "ip_version": 4}})
        return net["id"]

    def timed_get(self, params: dict | None = None) -> tuple[float, float, float, list[str], int]:
        """(seconds to the last byte, to parse with the json module, with orjson, the ports' ids,
        bytes). Each parse starts with no other parsed answer alive: a client parsing one list
        does not also hold another's hundreds of thousands of objects for the collector to walk."""
        gc.collect()
        started = time.monotonic()
        response = self.session.get(f"{self.base}/ports", params=params)
        body = response.content
        received = time.monotonic()
        ids = [port["id"] for port in _ok(response)["ports"]]  # requests' json(): the json module
        parsed = time.monotonic()
        gc.collect()
        orjson_started = time.monotonic()
        orjson.loads(body)
        return received - started, parsed - received, time.monotonic() - orjson_started, ids, len(body)


def _single_creates(api: _Api, network_id: str, count: int) -> float:
    """count creates of one port each by CLIENTS clients at once: ports per second."""
    errors: list[BaseException] = []

    def client(share: int) -> None:
        session = requests.Session()
        try:
            for _ in range(share):
                api.post("ports", {"port": {"network_id": network_id}}, session)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    shares = [count // CLIENTS + (i < count % CLIENTS) for i in range(CLIENTS)]
    threads = [threading.Thread(target=client, args=(share,)) for share in shares]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"single creates: {errors[0]}")
    return count / (time.monotonic() - started)


def measure(sizes: list[int], step: Callable[[str], None] = lambda _label: None,
            singles: int = SINGLES) -> list[ApiPoint]:
    points = []
    with EtcdServer() as etcd, _server(etcd.start().url) as url:
        api = _Api(url)
        _ok(api.session.put(f"{api.base}/quotas/{DEFAULT_PROJECT}", json={"quota": {"network": -1, "subnet": -1,
                                                                                      "port": -1}}))
        made, busy, networks, network_id = 0, 0.0, 0, ""
        for size_index, bulks in enumerate(_plan(sizes)):
            for new_network, count in bulks:
                if new_network:
                    network_id = api.network(f"api-{networks}", f"{NETWORKS_FROM + networks * 1024}/22")
                    networks += 1
                started = time.monotonic()
                api.post("ports", {"ports": [{"network_id": network_id}] * count})
                busy += time.monotonic() - started
                made += count
                step(f"api: {made:,} ports, {made / busy:,.0f} per second")
            lists = [api.timed_get() for _ in range(LIST_RUNS)]
            list_seconds, parse_seconds, parse_orjson, listed, size_bytes = min(lists, key=lambda found: found[0])
            step(f"api: listed {len(listed):,} ports in {list_seconds:.2f} s")
            first_page = api.timed_get({"limit": PAGE})[0]
            middle_page = api.timed_get({"limit": PAGE, "marker": listed[len(listed) // 2]})[0]
            next_page = api.timed_get({"limit": PAGE, "marker": listed[len(listed) * 3 // 4]})[0]
            step(f"api: pages of {PAGE} in {first_page * 1000:.0f}, {middle_page * 1000:.0f} and "
                 f"{next_page * 1000:.0f} ms")
            singles_net = api.network(f"api-singles-{size_index}", f"{SINGLES_FROM + size_index * 4096}/20")
            single_rate = _single_creates(api, singles_net, singles)
            step(f"api: {single_rate:,.0f} single creates per second, {CLIENTS} clients")
            api.post("ports", {"port": {"network_id": singles_net}})
            after_creates = api.timed_get({"limit": PAGE})[0]
            api.post("ports", {"port": {"network_id": singles_net}})
            after_write = api.timed_get({"limit": PAGE})[0]
            api.post("ports", {"port": {"network_id": singles_net}})
            marker_after_write = api.timed_get({"limit": PAGE, "marker": listed[len(listed) // 2]})[0]
            api.post("ports", {"port": {"network_id": singles_net}})
            list_after_write = api.timed_get()[0]
            step(f"api: right after a write: a page in {after_write * 1000:.0f} ms, by marker "
                 f"{marker_after_write * 1000:.0f} ms, every port {list_after_write:.2f} s")
            points.append(ApiPoint(len(listed), made / busy, single_rate, CLIENTS, list_seconds, parse_seconds,
                                   parse_orjson, size_bytes / 2**20, first_page, middle_page, next_page,
                                   after_creates, after_write, marker_after_write, list_after_write))
    return points


def summary(points: list[dict]) -> list[str]:
    """The API part of summary.md, from its results.json entry."""
    lines = ["## API (real etcd, a real `dfxdp server`)", "",
             "| ports | bulk creates/s | single creates/s (clients) | list all (s, MiB) | its parse: json module, "
             "orjson (s) | first page (ms) | by marker: first, next (ms) | first page after 1,000 creates (ms) "
             "| right after one write: first page, by marker (ms), list all (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {p['ports']:,} | {p['bulk_create_per_second']:,.0f} | {p['single_create_per_second']:,.0f} "
              f"({p['clients']}) | {p['list_seconds']:.2f} ({p['list_megabytes']:.0f}) | "
              f"{p['list_parse_seconds']:.2f}, {p['list_parse_orjson_seconds']:.2f} | "
              f"{p['first_page_seconds'] * 1000:.0f} | {p['middle_page_seconds'] * 1000:.0f}, "
              f"{p['next_marker_page_seconds'] * 1000:.1f} | {p['page_after_creates_seconds'] * 1000:.0f} | "
              f"{p['page_after_write_seconds'] * 1000:.0f}, {p['marker_page_after_write_seconds'] * 1000:.0f}, "
              f"{p['list_after_write_seconds']:.2f} |" for p in points]
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", default="10000", help="comma-separated sizes, e.g. 10000,100000")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.ports.split(",")})
    for point in measure(sizes, lambda message: print(message, flush=True)):
        print(json.dumps(asdict(point)))


if __name__ == "__main__":
    main()
