"""The multi-chassis test helper: two clusters side by side (a bench while tests run)
each get their own management link, API and etcd, reachable from the root namespace."""
import json

from dfxdp.nb.db import open_store
from dfxdp.nb.txn import NB
from dfxdp.testing.cluster import Cluster
from dfxdp.testing.netns import Topology


def network_names(cluster):
    kvs, _ = open_store(cluster.root_db_url).range(f"{NB}network/")
    return {json.loads(kv.value)["name"] for kv in kvs}


def test_two_clusters_run_side_by_side():
    with Topology("ca") as topo_a, Topology("cb") as topo_b:
        a = Cluster(topo_a, chassis=1, start_agents=False)
        try:
            b = Cluster(topo_b, chassis=1, start_agents=False)
            try:
                assert a.api_url != b.api_url
                a.connect().network.create_network(name="only-in-a")
                b.connect().network.create_network(name="only-in-b")
                assert network_names(a) == {"only-in-a"} and network_names(b) == {"only-in-b"}
            finally:
                b.close()
        finally:
            a.close()
