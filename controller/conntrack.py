"""Agent-side conntrack upkeep: end flows a rule change no longer allows, and
sweep expired entries (the datapath only removes those it happens to meet).

The datapath keeps writing while the sweep works: an entry read as expired may
have been refreshed, or removed and opened again for a new flow of the same
5-tuple, by the time the sweep acts on it. The kernel has no compare-and-delete,
so the sweep takes such an entry out atomically and puts back what turned out
to be live (the datapath's own entry wins if it made a newer one meanwhile)."""
from __future__ import annotations

import errno
import socket
import sys
import time

from dfxdp.datapath.libbpf import BpfError, Map, lib, to_dict

from .sg_compiler import Policy

TIMEOUTS = {lib.CT_SYN_SENT: lib.CT_TIMEOUT_SYN, lib.CT_ESTABLISHED: lib.CT_TIMEOUT_ESTABLISHED,
            lib.CT_CLOSING: lib.CT_TIMEOUT_CLOSING, lib.CT_FIN_ORIG: lib.CT_TIMEOUT_HALF_CLOSED,
            lib.CT_FIN_REPLY: lib.CT_TIMEOUT_HALF_CLOSED, lib.CT_UDP: lib.CT_TIMEOUT_UDP,
            lib.CT_ICMP: lib.CT_TIMEOUT_ICMP}


def _addr(be32: int) -> str:
    """A __be32 read through cffi (its memory bytes are in network order) as dotted text."""
    return socket.inet_ntoa(be32.to_bytes(4, sys.byteorder))


def _port(be16: int) -> int:
    return int.from_bytes(be16.to_bytes(2, sys.byteorder), "big")


def is_expired(entry: dict, now_ns: int) -> bool:
    """The datapath's ct_expired: an entry stamped after `now_ns` (Python ints do not
    wrap) has a negative age and is live."""
    return now_ns - entry["last_seen_ns"] > TIMEOUTS.get(entry["state"], lib.CT_TIMEOUT_OTHER) * 1_000_000_000


def remove_if_expired(ct: Map, raw_key: bytes, now_ns: int) -> bool:
    """Remove an entry read as expired unless the datapath has renewed it since;
    True when an expired entry went."""
    taken = ct.take(raw_key)
    if taken is None:
        return False  # the datapath met it first and removed it
    if is_expired(to_dict(taken), now_ns):
        return True
    try:
        ct.update(raw_key, taken, lib.BPF_NOEXIST)
    except BpfError as exc:
        if exc.errno != errno.EEXIST:  # EEXIST: a newer entry of the datapath's is in place: keep it
            raise
    return False


def maintain(ct: Map, policies: dict[tuple[int, int], Policy], now_ns: int | None = None) -> tuple[int, int]:
    """Delete expired entries, and entries of filtered ports whose flow the
    current rules would refuse. Returns (expired, revoked)."""
    # read the clock before the table: entries stamped while we read it are younger than now_ns
    now_ns = time.monotonic_ns() if now_ns is None else now_ns  # the datapath stamps its coarse twin
    expired = revoked = 0
    for raw_key, raw_value in ct.raw_items().items():
        key, entry = to_dict(ct.decode(ct.key_type, raw_key)), to_dict(ct.decode(ct.value_type, raw_value))
        if is_expired(entry, now_ns):
            expired += remove_if_expired(ct, raw_key, now_ns)
            continue
        policy = policies.get((key["port_key"], key["direction"]))
        if policy is None:
            continue  # the port is gone or unfiltered: its entries expire on their own
        remote = key["saddr"] if key["direction"] == lib.SG_INGRESS else key["daddr"]
        l4 = _port(key["dport"]) if key["proto"] in (6, 17, 132) else 0
        if key["proto"] == 1:
            l4 = 8 << 8  # only echo requests open ICMP flows
        if not policy.allows(key["proto"], _addr(remote), l4):
            revoked += ct.delete(raw_key)
    return expired, revoked
