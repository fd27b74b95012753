"""The rings new flows are steered by: Maglev's minimal disruption (adding or
removing one of N members moves at most 1/N + 5% of the slots, i.e. of new
flows under a uniform hash), weights honoured, round robin in turn."""
from collections import Counter

import pytest

from dfxdp.controller.maglev import EMPTY, RING_SIZE, Member, maglev_ring, round_robin_ring


def members(n, start=0, weight=1):
    return [Member(key=i + 1, ident=f"member-{i:04d}", weight=weight) for i in range(start, start + n)]


def moved(before, after):
    return sum(a != b for a, b in zip(before, after)) / len(before)


@pytest.mark.parametrize("n", [3, 10, 50])
def test_adding_one_member_moves_at_most_its_share_of_new_flows(n):
    base = members(n)
    disrupted = moved(maglev_ring(base), maglev_ring(base + members(1, start=n)))
    assert disrupted <= 1 / n + 0.05, disrupted
    assert disrupted > 0  # the newcomer did get slots


@pytest.mark.parametrize("n", [3, 10, 50])
def test_removing_one_member_moves_at_most_its_share_of_new_flows(n):
    base = members(n)
    for gone in (0, n // 2, n - 1):
        after = maglev_ring(base[:gone] + base[gone + 1:])
        assert moved(maglev_ring(base), after) <= 1 / n + 0.05
        assert base[gone].key not in after


def test_slots_are_shared_evenly_and_every_slot_is_filled():
    ring = maglev_ring(members(7))
    assert len(ring) == RING_SIZE and EMPTY not in ring
    shares = Counter(ring)
    assert max(shares.values()) - min(shares.values()) <= RING_SIZE * 0.01


def test_weights_are_honoured():
    ring = maglev_ring([Member(1, "a", 3), Member(2, "b", 1), Member(3, "c", 0)])
    shares = Counter(ring)
    assert 3 not in shares  # weight 0: drained
    assert abs(shares[1] / RING_SIZE - 0.75) < 0.01 and abs(shares[2] / RING_SIZE - 0.25) < 0.01


def test_the_ring_depends_on_members_not_their_order():
    base = members(5)
    assert maglev_ring(base) == maglev_ring(list(reversed(base)))


def test_no_member_leaves_every_slot_empty():
    assert set(maglev_ring([])) == {EMPTY} and set(round_robin_ring([Member(1, "a", 0)])) == {EMPTY}


def test_round_robin_takes_members_in_turn_by_weight():
    ring = round_robin_ring([Member(1, "a", 5), Member(2, "b", 1), Member(3, "c", 1)])
    assert ring[:7] == [1, 1, 2, 1, 3, 1, 1]
    assert len(ring) == RING_SIZE
    shares = Counter(ring)
    assert abs(shares[1] / RING_SIZE - 5 / 7) < 0.001
