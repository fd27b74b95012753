"""`python -m dfxdp.bench.agent`: the agent's side at a size, in process. A smoke test at a tiny
size (never on timings): the full pass writes every port's entries, an event's pass stays small,
and a restarted agent's first pass over the same pins writes nothing."""
from dfxdp.bench.agent import measure


def test_the_agent_bench_programs_every_port_and_passes_after_one_event_stay_small():
    point = measure(40)
    # fdb, arp_table, a name and a reverse name for each of the 40 ports, beside the rest
    assert point.entries >= 4 * 40
    assert 0 < point.scopes_per_event <= 10
    assert point.rss_mib > 0 and point.member_pass_ms >= 0
    assert point.restart_written == 0
