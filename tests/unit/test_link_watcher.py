"""The agent's link watcher sees taps come and go from netlink events alone
(no periodic re-read), so a plugged VM is bound at once."""
import threading

from dfxdp.controller.binding import LinkWatcher
from dfxdp.testing.netns import Topology, inside, unique_suffix


def test_links_appearing_and_going_are_reported_by_events():
    changed = threading.Event()
    with Topology("lw") as topo:
        ns = topo.netns("host")
        with inside(ns):
            watcher = LinkWatcher(changed.set)
        try:
            tap = f"tap{unique_suffix()}"[:15]
            topo.ip(ns, f"link add {tap} type veth peer name {tap[:12]}pr")
            assert changed.wait(3), "no change reported for a new link"
            assert tap in watcher.snapshot()
            changed.clear()
            topo.ip(ns, f"link del {tap}")
            assert changed.wait(3), "no change reported for a removed link"
            assert tap not in watcher.snapshot()
        finally:
            watcher.close()
