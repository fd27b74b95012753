"""Frames an app sends straight into a local tap (to the VM behind it) from os-ken's thread
or a pass: the punt path's AF_PACKET sender (controller/punt.py), made when first needed."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class TapSender:
    def __init__(self, what: str, sender=None) -> None:
        self.what = what  # what is sent, for the log
        self._sender = sender  # given: a stand-in (tests)
        self._lock = threading.Lock()

    def send(self, ifindex: int, frame: bytes) -> None:
        """Send, or log why not: a tap that went away between the pass and now is no error
        (the VM asks again, or the next pass sends)."""
        with self._lock:  # one socket for every thread
            if self._sender is None:
                from dfxdp.controller.punt import ReplySender  # imported here: punt.py imports the apps

                self._sender = ReplySender()
            try:
                self._sender.send(ifindex, frame)
            except OSError as exc:
                log.debug("%s to ifindex %d: %s", self.what, ifindex, exc)
