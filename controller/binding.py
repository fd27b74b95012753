"""Port binding by Neutron's convention: the tap of port P is `tap` + P[:11].

A netlink monitor (controller/netlink.py) in the agent's network namespace keeps the
links that exist (tap interfaces, and the underlay's MTU); the agent binds the ports whose
binding:host_id is this chassis and whose tap is there, and unbinds them when it goes.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from . import netlink

log = logging.getLogger(__name__)

TAP_PREFIX = "tap"


def tap_name(port_id: str) -> str:
    return TAP_PREFIX + port_id[:11]


class LinkWatcher:
    """Interfaces of this namespace by name -> ifindex (and their MTUs), kept current by
    netlink events: a pass reads what the events left, never the kernel again."""

    def __init__(self, on_change: Callable[[], None]):
        self.on_change = on_change
        self.links: dict[str, int] = {}
        self._mtus: dict[int, int] = {}
        self._lock = threading.Lock()
        self._events = netlink.LinkEvents()  # subscribed before the dump: a link added in between is in both
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="link-watcher", daemon=True)
        self._thread.start()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.links)

    def mtu(self, ifindex: int) -> int:
        """The link's MTU as the last event told; 0 when it is gone."""
        with self._lock:
            return self._mtus.get(ifindex, 0)

    def refresh(self) -> None:
        """Re-read every link: at start, after lost events, and as the idle agent's safety net."""
        found = netlink.links()
        with self._lock:
            self.links = {link.name: link.index for link in found}
            self._mtus = {link.index: link.mtu for link in found}

    def _run(self) -> None:
        try:
            while True:
                events = self._events.read()
                if events is None:
                    return
                if not events:  # the kernel dropped events (ENOBUFS): read everything again
                    self.refresh()
                    self.on_change()
                    continue
                if any([self._apply(present, link) for present, link in events]):
                    self.on_change()
        except OSError:
            log.exception("link watcher stopped")
        finally:
            self._events.release()

    def _apply(self, present: bool, link: netlink.Link) -> bool:
        """One event into the table; whether a name, index or MTU changed."""
        with self._lock:
            if present:
                changed = self.links.get(link.name) != link.index or self._mtus.get(link.index) != link.mtu
                self.links[link.name], self._mtus[link.index] = link.index, link.mtu
                return changed
            if self.links.get(link.name) != link.index:
                return False
            del self.links[link.name]
            self._mtus.pop(link.index, None)
            return True

    def close(self) -> None:
        self._events.close()
        self._thread.join(timeout=2)


def link_mac(name: str) -> tuple[int, str]:
    """ifindex and MAC of an interface in this namespace (ValueError when absent)."""
    found = netlink.link(name)
    return found.index, found.mac
