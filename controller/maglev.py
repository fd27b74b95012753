"""The rings a pool's new flows are steered by (LB_RING_SIZE slots of member keys).

Maglev (Eisenbud et al., NSDI 2016), as Katran builds it: every member has its own
permutation of the slots, from two hashes of its id; members take turns claiming
their next free preferred slot until the ring is full. A member with weight w
takes turns w/max-weight as often, so it holds about that share of the slots.
Because a member's permutation depends on its id alone, adding or removing one of
N members moves about 1/N of the slots (tests/unit/test_maglev.py measures it).

ROUND_ROBIN pools get a smooth weighted round-robin sequence instead (nginx's
algorithm): the datapath walks it slot by slot, one new flow per slot.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from dfxdp.datapath.libbpf import lib

RING_SIZE = lib.LB_RING_SIZE
EMPTY = 0  # a slot with no member: the datapath drops new flows there (DROP_LB_NO_MEMBER)


@dataclass(frozen=True)
class Member:
    key: int      # the datapath's member key (lb_backends)
    ident: str    # stable identity: the member's NB id
    weight: int   # 1 … 256 (0: drained, takes no slot)


def _permutation(ident: str, size: int) -> tuple[int, int]:
    digest = hashlib.blake2b(ident.encode(), digest_size=16).digest()
    offset = int.from_bytes(digest[:8], "little") % size
    skip = int.from_bytes(digest[8:], "little") % (size - 1) + 1
    return offset, skip


def maglev_ring(members: list[Member], size: int = RING_SIZE) -> list[int]:
    live = sorted((m for m in members if m.weight > 0), key=lambda m: m.ident)
    ring = [EMPTY] * size
    if not live:
        return ring
    perms = [_permutation(m.ident, size) for m in live]
    tried = [0] * len(live)  # how far each member walked its permutation
    credit = [0.0] * len(live)
    top = max(m.weight for m in live)
    filled = 0
    while True:
        for i, m in enumerate(live):
            credit[i] += m.weight / top
            if credit[i] < 1.0:
                continue
            credit[i] -= 1.0
            offset, skip = perms[i]
            slot = (offset + tried[i] * skip) % size
            while ring[slot] != EMPTY:
                tried[i] += 1
                slot = (offset + tried[i] * skip) % size
            ring[slot] = m.key
            tried[i] += 1
            filled += 1
            if filled == size:
                return ring


def round_robin_ring(members: list[Member], size: int = RING_SIZE) -> list[int]:
    """Smooth weighted round robin: each step every member gains its weight, the
    richest is chosen and pays the total, so weights 5,1,1 give a a b a c a a."""
    live = sorted((m for m in members if m.weight > 0), key=lambda m: m.ident)
    if not live:
        return [EMPTY] * size
    total = sum(m.weight for m in live)
    current = [0] * len(live)
    period = []  # the sequence repeats every `total` steps: compute it once, then tile
    for _ in range(min(total, size)):
        for i, m in enumerate(live):
            current[i] += m.weight
        best = max(range(len(live)), key=current.__getitem__)
        current[best] -= total
        period.append(live[best].key)
    return (period * (size // len(period) + 1))[:size]
