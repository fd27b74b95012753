"""The agent's link watcher sees taps come and go (and MTUs change) from netlink events alone
(no re-read per pass), so a plugged VM is bound at once; the plain netlink queries answer as
`ip` shows."""
import threading
import time

import pytest

from dfxdp.controller import netlink
from dfxdp.controller.binding import LinkWatcher
from dfxdp.testing.netns import Topology, inside, unique_suffix


def seen_within(seconds, check) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_links_appearing_and_going_are_reported_by_events():
    changed = threading.Event()
    with Topology("lw") as topo:
        ns = topo.netns("host")
        with inside(ns):
            watcher = LinkWatcher(changed.set)
        try:
            tap = f"tap{unique_suffix()}"[:15]
            topo.ip(ns, f"link add {tap} type veth peer name {tap[:12]}pr")
            # the pair's two ends arrive as two events: wait for the tap's own
            assert seen_within(3, lambda: tap in watcher.snapshot()) and changed.is_set()
            changed.clear()
            topo.ip(ns, f"link del {tap}")
            assert seen_within(3, lambda: tap not in watcher.snapshot()) and changed.is_set()
        finally:
            watcher.close()


def test_an_mtu_change_is_reported_and_kept():
    """The underlay's MTU comes with the link events (no netlink read per pass)."""
    changed = threading.Event()
    with Topology("lwm") as topo:
        ns = topo.netns("host")
        tap = f"und{unique_suffix()}"[:15]
        topo.ip(ns, f"link add {tap} mtu 1500 type veth peer name {tap[:12]}pr")
        with inside(ns):
            watcher = LinkWatcher(changed.set)
        try:
            index = watcher.snapshot()[tap]
            assert watcher.mtu(index) == 1500
            topo.ip(ns, f"link set {tap} mtu 1400")
            assert seen_within(3, lambda: watcher.mtu(index) == 1400) and changed.is_set()
        finally:
            watcher.close()


def test_netlink_answers_links_neighbours_and_next_hops():
    with Topology("nlq") as topo:
        ns = topo.netns("host")
        topo.ip(ns, "link add nl0 address 02:00:00:00:00:01 type veth peer name nl1")
        topo.ip(ns, "addr add 198.18.7.1/24 dev nl0")
        topo.ip(ns, "link set nl0 up")
        topo.ip(ns, "route add 198.18.9.0/24 via 198.18.7.254")
        topo.ip(ns, "neigh replace 198.18.7.254 lladdr 02:00:00:00:00:fe dev nl0 nud permanent")
        with inside(ns):
            link = netlink.link("nl0")
            assert (link.mac, link.mtu) == ("02:00:00:00:00:01", 1500) and netlink.link("lo").index == 1
            assert netlink.next_hop("198.18.9.5") == "198.18.7.254"  # by the gateway
            assert netlink.next_hop("198.18.7.9") == "198.18.7.9"  # on the link
            assert netlink.neighbours()[("198.18.7.254", link.index)][0] == "02:00:00:00:00:fe"
            with pytest.raises(ValueError, match="nl9"):
                netlink.link("nl9")
