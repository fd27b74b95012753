"""Port binding by Neutron's convention: the tap of port P is `tap` + P[:11].

A netlink monitor (pyroute2) in the agent's network namespace keeps the set of
tap interfaces that exist; the agent binds the ports whose binding:host_id is
this chassis and whose tap is there, and unbinds them when it goes.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from pyroute2 import IPRoute

log = logging.getLogger(__name__)

TAP_PREFIX = "tap"


def tap_name(port_id: str) -> str:
    return TAP_PREFIX + port_id[:11]


class LinkWatcher:
    """Interfaces of this namespace by name -> ifindex, kept current by netlink events."""

    def __init__(self, on_change: Callable[[], None]):
        self.on_change = on_change
        self.links: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ipr: IPRoute | None = None
        subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(subscribed,), name="link-watcher", daemon=True)
        self._thread.start()
        subscribed.wait(10)
        self.refresh()  # after subscribing: a link added in between is in the dump or in an event

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.links)

    def refresh(self) -> None:
        """Re-read every link: a safety net under the event stream, run on each agent pass."""
        with IPRoute() as ipr:
            links = {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}
        with self._lock:
            self.links = links

    def _run(self, subscribed: threading.Event) -> None:
        # pyroute2 (>= 0.9) delivers events only to the thread that owns the socket: open it here.
        self._ipr = IPRoute()
        self._ipr.bind()
        subscribed.set()
        while not self._stop.is_set():
            try:
                messages = self._ipr.get()  # blocks until the kernel reports something
            except Exception:  # noqa: BLE001 - the socket was closed by close(), or netlink failed
                if not self._stop.is_set():
                    log.exception("link watcher stopped")
                return
            changed = False
            for msg in messages:
                event = msg.get("event")
                if event not in ("RTM_NEWLINK", "RTM_DELLINK"):
                    continue
                name = msg.get_attr("IFLA_IFNAME")
                with self._lock:
                    if event == "RTM_NEWLINK":
                        changed |= self.links.get(name) != msg["index"]
                        self.links[name] = msg["index"]
                    elif self.links.get(name) == msg["index"]:
                        del self.links[name]
                        changed = True
            if changed:
                self.on_change()

    def close(self) -> None:
        self._stop.set()
        if self._ipr is not None:
            self._ipr.close()  # wakes the blocked get() with EBADF
        self._thread.join(timeout=2)


def link_mac(name: str) -> tuple[int, str]:
    """ifindex and MAC of an interface in this namespace (ValueError when absent)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise ValueError(f"interface {name!r} does not exist in this network namespace")
        link = ipr.get_links(found[0])[0]
        return link["index"], link.get_attr("IFLA_ADDRESS")
