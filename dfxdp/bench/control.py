"""Control plane with a real etcd: how fast NB changes become datapath state.

One multi-chassis cluster (dfxdp.testing.cluster, etcd + `dfxdp server` in the
fabric namespace) with one real chassis running `dfxdp agent`, and a few
simulated chassis: NB chassis records with tunnel IPs and ports bound to them,
but no agent. Every network hangs off one router that also has a network on
the real chassis, so the real agent's selective cache holds every port: the
worst case for it. The NB grows to each size in turn (through the REST API,
which is also the create-throughput measurement); at each size:

- write → programmed: a port created through the API for a simulated chassis,
  until its fdb entry is in the real chassis' pinned map (p50/p99);
- API call → first forwarded packet: a port created for the real chassis, its
  VM plugged (tap veth, as Nova's VIF plug does), until a ping from it to a peer
  VM gets its answer, with its steps timed apart (FirstPacket);
- full resync: the agent restarted with its pins removed, until every bound
  port's fdb entry is back (each one looked for: a count would pass with entries
  missing, or never, when two ports share one);
- its resident memory (RSS) after the samples above;
- API list: one GET of every port.

The NB grows by Neutron's bulk create (BULK ports a request, four clients, each
on a network of its own: two bulks on one network collide on its addresses and
one starts over), so 100,000 ports take minutes, not the half hour one create a
request took. The agent is stopped while the NB grows (the resync starts it
again): the fill is the API's measurement, and the two CPUs are shared.

A part that fails says where the cluster's logs are (the agent's, the server's).

Apart from the sizes, `measure_router`: a router with 200 subnets, and a new
chassis with one port on one of them; from its agent's start until every
subnet's route is in its pinned `routes` map (Dragonflow published 30 s for
this on a new host).
"""
from __future__ import annotations

import concurrent.futures
import ipaddress
import math
import statistics
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Callable

import orjson
import requests

from dfxdp.controller import netlink
from dfxdp.controller.apps.base import mac_bytes
from dfxdp.controller.binding import tap_name
from dfxdp.datapath import libbpf
from dfxdp.datapath.libbpf import Map
from dfxdp.nb.db import open_store
from dfxdp.nb.model import DEFAULT_PROJECT
from dfxdp.nb.service import NBService
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology, inside, run

SIMULATED_CHASSIS = 4
PORTS_PER_NETWORK = 800           # of the 1021 addresses of a /22: room left for the samples in network 0
NETWORKS_FROM = ipaddress.ip_address("10.128.0.0")
API_WORKERS = 4                   # concurrent API clients while growing the NB
BULK = 400                        # ports per bulk create (~5 etcd ops a port: dfxdp/testing/etcd.py allows that)
WAIT_LIMIT = 600.0                # seconds before a measurement is declared stuck


@dataclass
class ControlPoint:
    ports: int                    # ports in NB at this size
    create_per_second: float      # ports created per second (bulk creates) while growing to this size
    list_seconds: float           # one GET /v2.0/ports of every port, to the last byte
    write_to_programmed_p50: float
    write_to_programmed_p99: float  # the maximum when there are fewer than 100 samples
    write_api_p50: float          # of which the API call itself (the create answered)
    write_api_p99: float
    write_after_api_p50: float    # and from the API's answer until the entry is in the map
    write_after_api_p99: float
    write_samples: int
    first_packet_p50: float       # API call creating a bound port → first ping answered
    first_packet_max: float
    first_packet_steps: dict      # FirstPacket's steps (seconds), the median of each
    resync_seconds: float         # empty agent → every port's fdb entry programmed
    agent_rss_mib: float


@dataclass
class FirstPacket:
    """A new VM's first packet, its steps in seconds. `agent` runs beside the rest of the plug
    (from the tap's appearance); `ping` waits for both, so the total is about create + read_back
    + plug + ping."""

    seconds: float                # the API call creating the port → the first ping answered
    create: float                 # POST /v2.0/ports answered
    read_back: float              # GET of the port (Nova reads it back before it plugs)
    plug: float                   # the tap veth, offloads, the guest's interface, address and route
    agent: float                  # the tap appeared → XDP attached to it (link event, the agent's pass)
    ping: float                   # plugged and programmed → the first ping answered


class TapProgrammed:
    """When a tap appears in a namespace and when XDP is attached to it: a thread inside the
    namespace (netlink events for the tap; the attach polled every millisecond)."""

    def __init__(self, ns: str, tap: str):
        self._times: list[float] = []
        self._error: BaseException | None = None
        subscribed = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(ns, tap, subscribed), daemon=True)
        self._thread.start()
        subscribed.wait(WAIT_LIMIT)  # before the plug: the tap's event is not missed

    def _watch(self, ns: str, tap: str, subscribed: threading.Event) -> None:
        try:
            with inside(ns):
                events = netlink.LinkEvents()
                subscribed.set()
                try:
                    ifindex = self._appeared(events, tap)
                finally:
                    events.close()
                    events.release()
                self._times.append(time.monotonic())
                _wait(f"XDP on {tap}", lambda: libbpf.xdp_query(ifindex)[0] != 0, poll=0.001)
                self._times.append(time.monotonic())
        except BaseException as exc:  # handed to result()
            self._error = exc
        finally:
            subscribed.set()

    @staticmethod
    def _appeared(events: netlink.LinkEvents, tap: str) -> int:
        while True:
            found = next((link.index for link in netlink.links() if link.name == tap), None)
            while found is None:
                batch = events.read()
                if not batch:  # events lost: look at every link again
                    break
                found = next((link.index for present, link in batch if present and link.name == tap), None)
            if found is not None:
                return found

    def result(self) -> tuple[float, float]:
        """(the tap appeared, XDP attached), monotonic seconds."""
        self._thread.join(WAIT_LIMIT)
        if self._error is not None:
            raise RuntimeError(f"control-plane bench: watching the new tap: {self._error}")
        return self._times[0], self._times[1]


def _bulks(made: int, total: int) -> list[range]:
    """The bulk creates that take NB from `made` to `total` bound ports (port n on network
    n // PORTS_PER_NETWORK), ordered so that the API_WORKERS concurrent ones are on different
    networks: every network's first bulk, then every network's second, and so on."""
    bulks, turns, n = [], {}, made
    while n < total:
        network = n // PORTS_PER_NETWORK
        end = min(n + BULK, total, (network + 1) * PORTS_PER_NETWORK)
        turns[network] = turns.get(network, -1) + 1
        bulks.append((turns[network], network, range(n, end)))
        n = end
    return [batch for _, _, batch in sorted(bulks, key=lambda bulk: bulk[:2])]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with few samples, p99 is the slowest one."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class Api:
    """A thin Neutron client: one HTTP session per thread, errors raise with the server's message."""

    def __init__(self, url: str):
        self.url = url
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _check(self, response: requests.Response) -> dict:
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text}")
        return response.json() if response.content else {}

    def create(self, collection: str, singular: str, body: dict) -> dict:
        return self._check(self._session().post(f"{self.url}/v2.0/{collection}", json={singular: body}))[singular]

    def create_bulk(self, collection: str, bodies: list[dict]) -> list[dict]:
        """Neutron's bulk create: every object or none; again, as a client would, while the
        server answers that concurrent creates on the same network collided (409)."""
        deadline = time.monotonic() + WAIT_LIMIT
        while True:
            response = self._session().post(f"{self.url}/v2.0/{collection}", json={collection: bodies})
            if response.status_code != 409 or time.monotonic() > deadline:
                return self._check(response)[collection]
            time.sleep(0.01)

    def show(self, collection: str, singular: str, obj_id: str) -> dict:
        return self._check(self._session().get(f"{self.url}/v2.0/{collection}/{obj_id}"))[singular]

    def put(self, path: str, body: dict) -> dict:
        return self._check(self._session().put(f"{self.url}/v2.0/{path}", json=body))

    def list_body(self, collection: str) -> bytes:
        """The list's answer unparsed."""
        response = self._session().get(f"{self.url}/v2.0/{collection}")
        if response.status_code >= 400:
            raise RuntimeError(f"GET {response.url}: {response.status_code} {response.text}")
        return response.content


def _wait(what: str, done: Callable[[], bool], poll: float = 0.002) -> float:
    """Seconds until done() holds."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > WAIT_LIMIT:
            raise RuntimeError(f"control-plane bench: {what} did not happen within {WAIT_LIMIT:.0f}s")
        time.sleep(poll)
    return time.monotonic() - started


class ControlBench:
    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.chassis = cluster.chassis[0]
        self.api = Api(cluster.api_url)
        # The bench reads NB directly for the chassis records and network keys, over the
        # management veth (etcd listens there too).
        self.nb = NBService(open_store(cluster.root_db_url))
        self.simulated = [f"sim{i}" for i in range(1, SIMULATED_CHASSIS + 1)]
        for i, name in enumerate(self.simulated, start=1):
            tunnel_ip = f"198.18.0.{100 + i}"
            self.nb.upsert_chassis(name, tunnel_ip)
            # a resolved next hop, as a live chassis would have: tunnel endpoints get programmed too
            cluster.topo.ip(self.chassis.ns, f"neigh replace {tunnel_ip} lladdr 02:00:00:00:01:{i:02x} "
                                             f"dev und0 nud permanent")
        # the bench fills one project far past Neutron's default quotas
        self.api.put(f"quotas/{DEFAULT_PROJECT}", {"quota": {"network": -1, "subnet": -1, "port": -1}})
        self.router = self.api.create("routers", "router", {"name": "bench"})
        self.networks: list[dict] = []
        self._net_keys: dict[str, int] = {}  # network id -> its datapath key
        self.bound = 0  # ports with a binding: each has an fdb entry on the real chassis
        self.fdb_keys: list[dict] = []  # the fdb key of each of them
        self._add_network()
        peer = self._create_port(self.networks[0], self.chassis.name)
        self.peer_vm = cluster.plug(self._sdk_port(peer), self.chassis, name="peer")
        self.peer_ip = peer["fixed_ips"][0]["ip_address"]
        self.chassis.start_agent()
        cluster.wait_active(peer["id"], timeout=60)

    # ---- NB growth ------------------------------------------------------------
    def _add_network(self) -> dict:
        index = len(self.networks)
        net = self.api.create("networks", "network", {"name": f"bench-{index}"})
        cidr = ipaddress.ip_network(f"{NETWORKS_FROM + index * 1024}/22")
        subnet = self.api.create("subnets", "subnet", {"network_id": net["id"], "cidr": str(cidr), "ip_version": 4})
        net.update(prefixlen=cidr.prefixlen, gateway_ip=subnet["gateway_ip"])  # what the bench's VMs configure
        self.api.put(f"routers/{self.router['id']}/add_router_interface", {"subnet_id": subnet["id"]})
        net["key"] = self.nb.get("network", net["id"])["key"]  # the API does not show datapath keys
        self.networks.append(net)
        self._net_keys[net["id"]] = net["key"]
        return net

    def _create_port(self, net: dict, host: str) -> dict:
        port = self.api.create("ports", "port", {"network_id": net["id"], "binding:host_id": host})
        self._bound(port)
        return port

    def _bound(self, port: dict) -> None:
        self.bound += 1
        self.fdb_keys.append({"net_key": self._net_keys[port["network_id"]], "mac": list(mac_bytes(port["mac_address"]))})

    def grow(self, total: int, progress: Callable[[int], None]) -> float:
        """Ports for the simulated chassis until NB holds `total` bound ports (the agent
        stopped meanwhile: resync() starts it); creates per second."""
        todo = total - self.bound
        if todo <= 0:
            return 0.0
        self.chassis.stop_agent()
        while len(self.networks) * PORTS_PER_NETWORK < total:
            self._add_network()
        started = time.monotonic()

        def create(batch: range) -> int:
            ports = self.api.create_bulk("ports", [{"network_id": self.networks[n // PORTS_PER_NETWORK]["id"],
                                                    "binding:host_id": self.simulated[n % SIMULATED_CHASSIS]}
                                                   for n in batch])
            with lock:
                for port in ports:
                    self._bound(port)
            return len(batch)

        lock = threading.Lock()
        pool = concurrent.futures.ThreadPoolExecutor(API_WORKERS)
        try:
            done = 0
            for future in concurrent.futures.as_completed([pool.submit(create, batch)
                                                           for batch in _bulks(self.bound, total)]):
                done += future.result()
                progress(done)
        finally:
            # on a failed create or an interrupt, do not work through the remaining thousands first
            pool.shutdown(cancel_futures=True)
        return todo / (time.monotonic() - started)

    # ---- datapath probes -----------------------------------------------------
    def _fdb(self) -> Map:
        return Map.pinned(self.chassis.bpffs / "maps" / "fdb")

    def _sdk_port(self, port: dict):
        return self.cluster.connect().network.get_port(port["id"])

    def write_to_programmed(self) -> tuple[float, float]:
        """(API call → the new port's fdb entry in the pinned map, the API call alone)."""
        net = self.networks[0]
        fdb = self._fdb()
        try:
            started = time.monotonic()
            port = self._create_port(net, self.simulated[0])
            created = time.monotonic()
            key = {"net_key": net["key"], "mac": list(mac_bytes(port["mac_address"]))}
            _wait("a new port's fdb entry", lambda: fdb.lookup(key) is not None)
            return time.monotonic() - started, created - started
        finally:
            fdb.close()

    def first_packet(self) -> "FirstPacket":
        """A new VM on the real chassis: its port created and read back through the API, its tap
        plugged, until a ping from it is answered; each step timed (FirstPacket). The VM's
        namespace stands in for the guest and exists before the clock starts (Nova boots the
        guest; plugging is the tap)."""
        net, vm = self.networks[0], self.cluster.topo.netns(f"vm{len(self.cluster.vms)}")
        started = time.monotonic()
        port = self._create_port(net, self.chassis.name)
        created = time.monotonic()
        port = self.api.show("ports", "port", port["id"])  # as Nova reads the port back before it plugs
        read_back = time.monotonic()
        programmed = TapProgrammed(self.chassis.ns, tap_name(port["id"]))
        self._plug(port, net, vm)
        plugged = time.monotonic()
        self.cluster.vms[port["id"]] = vm

        def answered() -> bool:
            # probes every 10 ms; ping gives up early once ARP fails, so ask again until it is answered
            return run(["nsenter", f"--net=/run/netns/{vm}", "ping", "-n", "-q", "-c", "1", "-i", "0.01", "-w", "2",
                        self.peer_ip], check=False).returncode == 0

        _wait("a first packet from a new VM", answered, poll=0)
        done = time.monotonic()
        tap_at, attached_at = programmed.result()
        return FirstPacket(done - started, created - started, read_back - created, plugged - read_back,
                           attached_at - tap_at, done - max(plugged, attached_at))

    def _plug(self, port: dict, net: dict, vm: str) -> None:
        """What os-vif and the guest do, in as few commands as they would: the tap veth with the
        port's MAC on the VM end and the network's MTU on both, the VM end's offloads
        (GRO on: NAPI for XDP's redirects; TX checksum off: docs/architecture.md, plugging),
        then the tap up (up before those, the VM end got no NAPI here and the redirected answers
        vanished), then the guest's side: its interface up, its address and default route."""
        mtu, tap = str(net["mtu"]), tap_name(port["id"])
        run(["ip", "-n", self.chassis.ns, "link", "add", tap, "mtu", mtu, "type", "veth", "peer", "name", "eth0",
             "address", port["mac_address"], "mtu", mtu, "netns", vm])
        run(["nsenter", f"--net=/run/netns/{vm}", "ethtool", "-K", "eth0", "gro", "on", "tx", "off"])
        run(["ip", "-n", self.chassis.ns, "link", "set", tap, "up"])
        address = port["fixed_ips"][0]["ip_address"]
        run(["ip", "-n", vm, "-batch", "-"], input=f"link set eth0 up\naddr add {address}/{net['prefixlen']} dev eth0\n"
                                                 f"route add default via {net['gateway_ip']}\n")

    def resync(self) -> float:
        """Restart the agent with nothing pinned; seconds until every bound port is programmed."""
        self.chassis.stop_agent()
        self.chassis.forget_datapath()
        started = time.monotonic()
        self.chassis.start_agent()
        fdb_path = self.chassis.bpffs / "maps" / "fdb"
        _wait("the agent's pinned fdb map", fdb_path.exists, poll=0.01)
        fdb = Map.pinned(fdb_path)
        try:
            missing = {fdb.encode_key(key) for key in self.fdb_keys}

            def complete() -> bool:
                # read back in batches (a key at a time, 100,000 syscalls a poll beside the agent)
                missing.difference_update(key for key, _ in fdb.raw_iter())
                return not missing

            try:
                _wait("a full resync", complete, poll=0.1)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}: {len(missing)} of {self.bound} bound ports have no fdb entry") from None
        finally:
            fdb.close()
        return time.monotonic() - started

    def agent_rss_mib(self) -> float:
        status = open(f"/proc/{self.chassis.proc.pid}/status").read()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024

    def list_seconds(self) -> tuple[float, int]:
        """One GET of every port, to the answer's last byte, as the API part times it (there the
        client's parse is timed apart: it is the client's, and this process holds the NB's
        samples for the collector to walk)."""
        started = time.monotonic()
        body = self.api.list_body("ports")
        seconds = time.monotonic() - started
        return seconds, len(orjson.loads(body)["ports"])


def measure(sizes: list[int], samples: int, first_packet_samples: int,
            progress: Callable[[str], None] = lambda _: None) -> list[ControlPoint]:
    points = []
    with Topology("bcp") as topo:
        cluster = Cluster(topo, chassis=1, db="etcd", start_agents=False)
        try:
            progress("control plane: cluster up")
            bench = ControlBench(cluster)
            for size in sizes:
                rate = bench.grow(size, lambda n, size=size: progress(f"control plane: NB → {size} ports (+{n})"))
                list_s, ports = bench.list_seconds()
                progress(f"control plane, {size} ports: full resync")
                resync = bench.resync()
                writes = []
                for i in range(samples):
                    progress(f"control plane, {size} ports: write → programmed {i + 1}/{samples}")
                    writes.append(bench.write_to_programmed())
                firsts = []
                for i in range(first_packet_samples):
                    progress(f"control plane, {size} ports: first packet {i + 1}/{first_packet_samples}")
                    firsts.append(bench.first_packet())
                rss = bench.agent_rss_mib()  # settled: after the full pass and the samples' passes
                totals = [first.seconds for first in firsts]
                points.append(ControlPoint(
                    ports=ports, create_per_second=rate, list_seconds=list_s,
                    write_to_programmed_p50=statistics.median(total for total, _ in writes),
                    write_to_programmed_p99=percentile([total for total, _ in writes], 99),
                    write_api_p50=statistics.median(api for _, api in writes),
                    write_api_p99=percentile([api for _, api in writes], 99),
                    write_after_api_p50=statistics.median(total - api for total, api in writes),
                    write_after_api_p99=percentile([total - api for total, api in writes], 99),
                    write_samples=len(writes),
                    first_packet_p50=statistics.median(totals), first_packet_max=max(totals),
                    first_packet_steps={f.name: statistics.median(getattr(first, f.name) for first in firsts)
                                        for f in fields(FirstPacket) if f.name != "seconds"},
                    resync_seconds=resync, agent_rss_mib=rss))
        except Exception as exc:
            raise RuntimeError(f"{exc} (the agent's and the server's logs: {cluster.logdir})") from exc
        finally:
            cluster.close()
        cluster.remove_logs()  # measured: nobody needs them
    return points


@dataclass
class RouterPoint:
    subnets: int                  # the router's subnets, each on its own network
    routable_seconds: float       # the new chassis' agent started → every subnet's route in its datapath


def measure_router(subnets: int, progress: Callable[[str], None] = lambda _: None) -> RouterPoint:
    """A router with `subnets` subnets; a new chassis with one port on one of them: seconds from
    its agent's start until its datapath routes to every subnet."""
    with Topology("brt") as topo:
        cluster = Cluster(topo, chassis=1, db="etcd", start_agents=False)
        try:
            api, chassis = Api(cluster.api_url), cluster.chassis[0]
            progress(f"control plane: a router with {subnets} subnets")
            api.put(f"quotas/{DEFAULT_PROJECT}", {"quota": {"network": -1, "subnet": -1, "port": -1}})
            router = api.create("routers", "router", {"name": "bench-200"})
            nets = [net for first in range(0, subnets, BULK) for net in api.create_bulk(
                "networks", [{"name": f"r{i}"} for i in range(first, min(first + BULK, subnets))])]
            for i, net in enumerate(nets):  # one at a time: a subnet brings its DHCP port
                subnet = api.create("subnets", "subnet", {"network_id": net["id"], "ip_version": 4,
                                                          "cidr": f"{NETWORKS_FROM + i * 256}/24"})
                api.put(f"routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]})
            api.create("ports", "port", {"network_id": nets[0]["id"], "binding:host_id": chassis.name})
            progress(f"control plane: a new chassis routes {subnets} subnets")
            started = time.monotonic()
            chassis.start_agent()
            routes_path = chassis.bpffs / "maps" / "routes"
            _wait("the new agent's pinned routes map", routes_path.exists, poll=0.005)

            def routable() -> bool:
                routes = Map.pinned(routes_path)
                try:
                    return len(routes) >= subnets
                finally:
                    routes.close()

            _wait(f"routes to {subnets} subnets", routable, poll=0.005)
            point = RouterPoint(subnets, time.monotonic() - started)
        except Exception as exc:
            raise RuntimeError(f"{exc} (the agent's and the server's logs: {cluster.logdir})") from exc
        finally:
            cluster.close()
        cluster.remove_logs()
    return point


def as_dicts(points: list[ControlPoint]) -> list[dict]:
    return [asdict(p) for p in points]
