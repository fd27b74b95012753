"""Conntrack entries against the clock: an entry lives while its flow's packets
keep coming, whichever CPU stamped it last, and the agent's sweep removes only
what is still expired when it deletes."""
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, IPerror, TCPerror

from dfxdp.controller import conntrack
from dfxdp.controller.apps.sg import local_policies
from dfxdp.datapath.libbpf import lib

from .test_sg import MAC_A, MAC_B, MAC_C, ct_entry, make_view, send, to_b
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


class DatapathActsAfterTheRead:
    """The conntrack map as the agent's sweep sees it, with the datapath writing
    `entry` under `key` (a refresh, or a new flow of the same 5-tuple) just after
    the sweep has read the table and before it deletes anything."""

    def __init__(self, ct, key, entry):
        self.ct, self.key, self.entry = ct, key, entry

    def raw_items(self):
        items = self.ct.raw_items()
        self.ct.update(self.key, self.entry)
        return items

    def __getattr__(self, name):
        return getattr(self.ct, name)


@pytest.mark.parametrize("state", ["CT_ESTABLISHED", "CT_SYN_SENT"], ids=["refreshed", "opened-again"])
def test_sweep_keeps_an_entry_the_datapath_renewed_after_the_read(sg, state):  # noqa: F811
    pipe, ifs = sg
    key, entry = established(pipe, ifs)
    now = time.monotonic_ns()
    stale = dict(entry, state=lib.CT_CLOSING, last_seen_ns=now - (lib.CT_TIMEOUT_CLOSING + 1) * 1_000_000_000)
    pipe.maps["conntrack"].update(key, stale)
    renewed = dict(entry, state=getattr(lib, state), last_seen_ns=now)
    ct = DatapathActsAfterTheRead(pipe.maps["conntrack"], key, renewed)
    assert conntrack.maintain(ct, local_policies(make_view(*ifs)), now_ns=now) == (0, 0)
    assert ct_entry(pipe, *FLOW)[1] == renewed
    assert to_b(pipe, ifs, TCP(sport=1234, dport=80, flags="A")).verdict == "XDP_REDIRECT"


def test_sweep_removes_what_stayed_expired(sg):  # noqa: F811
    pipe, ifs = sg
    key, entry = established(pipe, ifs)
    now = time.monotonic_ns()
    pipe.maps["conntrack"].update(key, dict(entry, state=lib.CT_CLOSING,
                                            last_seen_ns=now - (lib.CT_TIMEOUT_CLOSING + 1) * 1_000_000_000))
    assert conntrack.maintain(pipe.maps["conntrack"], local_policies(make_view(*ifs)), now_ns=now) == (1, 0)
    assert ct_entry(pipe, *FLOW)[1] is None


def test_icmp_error_about_a_reply_of_the_port_passes(sg):  # noqa: F811
    """B answers A's connection; a hop that cannot forward B's reply (here: fragmentation
    needed, from an address no rule allows) tells B, and B must hear it (path MTU discovery)."""
    pipe, ifs = sg
    established(pipe, ifs)
    error = IP(src="10.0.0.33", dst="10.0.0.2") / ICMP(type=3, code=4, nexthopmtu=1400) / \
        IPerror(src="10.0.0.2", dst="10.0.0.1") / TCPerror(sport=80, dport=1234, flags="A")
    res = send(pipe, ifs[2], MAC_C, MAC_B, error)
    assert (res.verdict, res.drop_reason) == ("XDP_REDIRECT", None)
    unrelated = IP(src="10.0.0.33", dst="10.0.0.2") / ICMP(type=3, code=4, nexthopmtu=1400) / \
        IPerror(src="10.0.0.2", dst="10.0.0.1") / TCPerror(sport=80, dport=1235, flags="A")
    assert send(pipe, ifs[2], MAC_C, MAC_B, unrelated).drop_reason == "DROP_SG_INGRESS"


def idle(pipe, seconds):
    """The flow's entry as if its last packet were `seconds` ago."""
    key, entry = ct_entry(pipe, *FLOW)
    pipe.maps["conntrack"].update(key, dict(entry, last_seen_ns=time.monotonic_ns() - seconds * 1_000_000_000))


@pytest.mark.parametrize("first", ["client", "server"])
def test_half_closed_flow_outlives_the_closing_timeout(sg, first):  # noqa: F811
    """One FIN half-closes: the other end may go quiet for longer than the closing
    timeout and still send (a request, then a slow answer). FINs both ways close."""
    pipe, ifs = sg
    established(pipe, ifs)
    a_sends = lambda flags: to_b(pipe, ifs, TCP(sport=1234, dport=80, flags=flags))  # noqa: E731
    b_sends = lambda flags: from_b(pipe, ifs, flags)  # noqa: E731
    closer, other = (a_sends, b_sends) if first == "client" else (b_sends, a_sends)
    assert closer("FA").verdict == "XDP_REDIRECT"
    idle(pipe, lib.CT_TIMEOUT_CLOSING + 1)
    assert (res := other("PA")).verdict == "XDP_REDIRECT", res.drop_reason
    assert closer("A").verdict == "XDP_REDIRECT"
    assert other("FA").verdict == "XDP_REDIRECT"
    assert ct_entry(pipe, *FLOW)[1]["state"] == lib.CT_CLOSING
    idle(pipe, lib.CT_TIMEOUT_CLOSING + 1)
    assert closer("A").verdict == "XDP_DROP"  # closed both ways, and expired
    assert ct_entry(pipe, *FLOW)[1] is None
