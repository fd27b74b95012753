"""The control bench's fill plan: every port once, no bulk across two networks, and the
API_WORKERS bulks in flight at once on different networks (two on one network collide on
its addresses, and one of them starts over)."""
from dfxdp.bench.control import API_WORKERS, BULK, PORTS_PER_NETWORK, _bulks


def test_bulks_cover_every_port_once_and_run_on_different_networks():
    made, total = 10_003, 100_000
    bulks = _bulks(made, total)
    assert sorted(n for batch in bulks for n in batch) == list(range(made, total))
    assert all(len(batch) <= BULK and batch.start // PORTS_PER_NETWORK == (batch.stop - 1) // PORTS_PER_NETWORK
               for batch in bulks)
    networks = [batch.start // PORTS_PER_NETWORK for batch in bulks]
    in_flight = [networks[i:i + API_WORKERS] for i in range(len(networks) - API_WORKERS + 1)]
    assert all(len(set(window)) == API_WORKERS for window in in_flight)
