"""Commands that build namespaces, processes and pins (bench, demo) must remove
them however they end. Ctrl-C raises KeyboardInterrupt in the main thread and
the `finally` blocks clean up; SIGTERM (kill, a CI timeout) and SIGHUP (a closed
terminal) would end the process on the spot, so they are made to do the same."""
from __future__ import annotations

import signal


def clean_exit_on_signals() -> None:
    def stop(signum: int, _frame) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # one is enough: a second must not cut the cleanup short
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
