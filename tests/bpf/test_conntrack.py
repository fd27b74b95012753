"""Conntrack entries against the clock: an entry lives while its flow's packets
keep coming, whichever CPU stamped it last."""
import time

import pytest
from scapy.layers.inet import IP, TCP

from dfxdp.datapath.libbpf import lib

from .test_sg import MAC_A, MAC_B, ct_entry, send, to_b
from .test_sg import sg  # noqa: F401 (a fixture)

FLOW = (2, lib.SG_INGRESS, "10.0.0.1", "10.0.0.2", 1234, 80)  # A -> B:80, tracked at B's ingress


def from_b(pipe, ifs, flags):
    return send(pipe, ifs[1], MAC_B, MAC_A, IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=1234, flags=flags))


def established(pipe, ifs):
    assert to_b(pipe, ifs, TCP(sport=1234, dport=80, flags="S")).verdict == "XDP_REDIRECT"
    assert from_b(pipe, ifs, "SA").verdict == "XDP_REDIRECT"
    key, entry = ct_entry(pipe, *FLOW)
    assert entry["state"] == lib.CT_ESTABLISHED
    return key, entry


@pytest.mark.parametrize("direction", ["forward", "reply"])
def test_entry_stamped_slightly_in_the_future_is_found(sg, direction):  # noqa: F811
    """Another CPU stamps the entry after this one read the clock: a moment ahead
    of this CPU's `now`, it is fresh, not 2^64 ns old."""
    pipe, ifs = sg
    key, entry = established(pipe, ifs)
    entry["last_seen_ns"] = time.monotonic_ns() + 50_000_000  # 50 ms ahead of any `now` the run reads
    pipe.maps["conntrack"].update(key, entry)
    res = to_b(pipe, ifs, TCP(sport=1234, dport=80, flags="A")) if direction == "forward" else from_b(pipe, ifs, "A")
    assert (res.verdict, res.drop_reason) == ("XDP_REDIRECT", None)
    assert ct_entry(pipe, *FLOW)[1] is not None


def test_entry_past_its_timeout_is_still_removed(sg):  # noqa: F811
    pipe, ifs = sg
    key, entry = established(pipe, ifs)
    entry["state"] = lib.CT_CLOSING  # the shortest timeout: a clock that started not long ago goes back that far
    entry["last_seen_ns"] = time.monotonic_ns() - (lib.CT_TIMEOUT_CLOSING + 1) * 1_000_000_000
    pipe.maps["conntrack"].update(key, entry)
    res = to_b(pipe, ifs, TCP(sport=1234, dport=80, flags="A"))
    assert (res.verdict, res.drop_reason) == ("XDP_DROP", "DROP_CT_NOT_SYN")
    assert ct_entry(pipe, *FLOW)[1] is None
