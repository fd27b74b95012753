"""The API's bulk create and lists at scale, on a real etcd behind a real `dfxdp server`:

- bulk create: `POST /v2.0/ports` with `{"ports": [...]}` of BULK ports, one request at a time,
  into networks of PORTS_PER_NETWORK ports (a /22 each, as the control part lays them out):
  ports per second of request time;
- list: `GET /v2.0/ports` of every port (seconds, best of LIST_RUNS);
- pages: `GET /v2.0/ports?limit=100`, the first page and one from the middle (a marker).

Runs on its own until it is one of `dfxdp bench`'s parts:
    python -m dfxdp.bench.api --ports 100000
"""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import requests

from dfxdp.nb.model import DEFAULT_PROJECT
from dfxdp.testing.etcd import EtcdServer, free_port

PORTS_PER_NETWORK = 800
BULK = 400
LIST_RUNS = 2
NETWORKS_FROM = ipaddress.ip_address("10.64.0.0")


@dataclass
class ApiPoint:
    ports: int
    bulk_create_per_second: float
    list_seconds: float
    first_page_seconds: float
    middle_page_seconds: float


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


def measure(ports: int, progress=lambda _message: None) -> ApiPoint:
    with EtcdServer() as etcd, _server(etcd.start().url) as url:
        session, base = requests.Session(), url + "/v2.0"
        _ok(session.put(f"{base}/quotas/{DEFAULT_PROJECT}", json={"quota": {"network": -1, "subnet": -1,
                                                                             "port": -1}}))
        made, busy = 0, 0.0
        for index in range((ports + PORTS_PER_NETWORK - 1) // PORTS_PER_NETWORK):
            net = _ok(session.post(f"{base}/networks", json={"network": {"name": f"api-{index}"}}))["network"]
            cidr = f"{NETWORKS_FROM + index * 1024}/22"
            _ok(session.post(f"{base}/subnets", json={"subnet": {"network_id": net["id"], "cidr": cidr,
                                                                 "ip_version": 4}}))
            left = min(PORTS_PER_NETWORK, ports - made)
            while left:
                count = min(BULK, left)
                started = time.monotonic()
                _ok(session.post(f"{base}/ports", json={"ports": [{"network_id": net["id"]}] * count}))
                busy += time.monotonic() - started
                made, left = made + count, left - count
            progress(f"api: {made} ports, {made / busy:.0f} per second")
        lists = []
        for _ in range(LIST_RUNS):
            started = time.monotonic()
            listed = _ok(session.get(f"{base}/ports"))["ports"]
            lists.append(time.monotonic() - started)
        middle = listed[len(listed) // 2]["id"]
        started = time.monotonic()
        _ok(session.get(f"{base}/ports", params={"limit": 100}))
        first_page = time.monotonic() - started
        started = time.monotonic()
        _ok(session.get(f"{base}/ports", params={"limit": 100, "marker": middle}))
        return ApiPoint(len(listed), made / busy, min(lists), first_page, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    args = parser.parse_args()
    print(json.dumps(asdict(measure(args.ports, lambda message: print(message, flush=True)))))


if __name__ == "__main__":
    main()
