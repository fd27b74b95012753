"""The agent's loop: a failed pass is counted and retried, whatever it raised."""
import threading

import pytest

from controller.agent import Agent, AgentConfig
from dfxdp.nb.db import open_store


@pytest.mark.parametrize("failure", [OSError("map update failed"), KeyError("a bug in an app's pass")])
def test_a_failed_pass_is_counted_and_retried_and_the_loop_goes_on(failure):
    agent = Agent(AgentConfig(chassis="c1", tunnel_ip="198.18.0.1", underlay="lo", db_url="memory://",
                              bpffs="/nonexistent"), store=open_store("memory://"))
    passes, second_pass = [], threading.Event()

    def sync_once():
        passes.append(1)
        if len(passes) == 1:
            raise failure
        second_pass.set()
        agent.stop()

    agent.sync_once = sync_once
    agent._dirty.set()
    loop = threading.Thread(target=agent.run_forever)
    loop.start()
    assert second_pass.wait(30), "the loop stopped after the failed pass"
    loop.join(30)
    assert not loop.is_alive()
    assert agent.errors == 1
    assert agent.metrics.reconcile_errors._value.get() == 1


class _Held:
    """A cycle holding a large object, as an audit's map passes do (a pass and its bound method)."""

    def __init__(self):
        self.me, self.payload = self, bytearray(1 << 20)


def test_an_audits_cycles_are_freed_though_the_cache_is_frozen():
    """After a full pass the agent freezes what it built; an audit's cycles made afterwards must
    still be freed when the audit pass ends (they held every key read, and piled up)."""
    import gc
    import weakref

    from controller.agent import collect_pass_garbage

    cache = [[i] for i in range(200_000)]  # a large frozen heap: the collector's own full collection waits
    collect_pass_garbage(full=True, audited=True)
    try:
        audit = _Held()
        held = weakref.ref(audit)
        gc.collect(0)
        gc.collect(1)  # the young generations' collections promote it while the pass holds it
        del audit
        collect_pass_garbage(full=False, audited=True)
        assert held() is None
    finally:
        gc.unfreeze()
        del cache
