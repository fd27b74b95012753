"""The agent's link watcher sees taps come and go from netlink events alone
(no periodic re-read), so a plugged VM is bound at once."""
import threading
import time

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
