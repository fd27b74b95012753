"""The cookie-based flow reconciler against a switch that behaves like OVS's tables:
one flow per (table, priority, match), an add with the same key replaces the flow."""
import pytest

from dfxdp.controller.ovs.flows import DROP, Flow, FlowReconciler, Installed, Owner, goto, output

OWNER = Owner("flood", 1, (0, 10))


class FakeSwitch:
    def __init__(self):
        self.flows: dict[int, Flow] = {}   # cookie -> flow
        self.log: list[tuple[str, int]] = []
        self.dumps = 0
        self.refuse: set[int] = set()      # cookies whose add the switch refuses
        self.watch_key = None              # a key that must never be missing once present
        self.gaps = 0

    def _check(self):
        if self.watch_key is not None and not any(f.key == self.watch_key for f in self.flows.values()):
            self.gaps += 1

    def dump_flows(self):
        self.dumps += 1
        return [Installed(cookie, flow.table) for cookie, flow in self.flows.items()]

    def add_flows(self, flows):
        errors = []
        for cookie, flow in flows:
            if cookie in self.refuse:
                errors.append(f"refused {flow}")
                continue
            for old in [c for c, f in self.flows.items() if f.key == flow.key]:
                del self.flows[old]
            self.flows[cookie] = flow
            self.log.append(("add", cookie))
            self._check()
        return errors

    def delete_flows(self, flows):
        for f in flows:
            self.flows.pop(f.cookie, None)
            self.log.append(("delete", f.cookie))
            self._check()
        return []


def flood(*flows):
    return {"flood": list(flows)}


A = Flow.of(0, 100, {"in_port": 1}, [goto(10)])
B = Flow.of(10, 100, {"eth_dst": "fa:16:3e:00:00:01"}, [output(2)])
B2 = Flow.of(10, 100, {"eth_dst": "fa:16:3e:00:00:01"}, [output(3)])  # B moved to another port
MISS = Flow.of(10, 0, {}, DROP)


def test_first_pass_adds_everything_and_removes_strangers_only_in_owned_tables():
    sw = FakeSwitch()
    stranger, elsewhere = Flow.of(10, 5, {"in_port": 9}, []), Flow.of(30, 5, {}, [])
    sw.flows = {0x0: stranger, 0x7: elsewhere}
    result = FlowReconciler([OWNER]).apply(sw, flood(A, B, MISS))
    assert result.audited and result.added == 3 and result.removed == 1 and not result.errors
    assert set(sw.flows.values()) == {A, B, MISS, elsewhere}
    assert result.per_table == {0: 1, 10: 2}


def test_an_unchanged_view_changes_nothing_and_reads_nothing_back():
    sw, rec = FakeSwitch(), FlowReconciler([OWNER])
    rec.apply(sw, flood(A, B))
    log, dumps = list(sw.log), sw.dumps
    result = rec.apply(sw, flood(A, B))
    assert (result.added, result.removed, result.audited) == (0, 0, False)
    assert sw.log == log and sw.dumps == dumps


def test_a_changed_flow_is_added_before_the_old_one_is_deleted_with_no_gap():
    sw, rec = FakeSwitch(), FlowReconciler([OWNER])
    rec.apply(sw, flood(A, B))
    sw.watch_key = B.key
    sw.log.clear()
    result = rec.apply(sw, flood(A, B2))
    assert [op for op, _ in sw.log] == ["add", "delete"]
    assert sw.gaps == 0 and set(sw.flows.values()) == {A, B2}
    assert result.added == 1 and result.removed == 1


def test_a_restarted_agent_adds_no_duplicate():
    sw = FakeSwitch()
    FlowReconciler([OWNER]).apply(sw, flood(A, B, MISS))
    before = dict(sw.flows)
    result = FlowReconciler([OWNER]).apply(sw, flood(A, B, MISS))  # a new agent, same view
    assert (result.added, result.removed) == (0, 0)
    assert sw.flows == before


def test_a_switch_that_lost_its_flows_gets_them_back_after_forget():
    sw, rec = FakeSwitch(), FlowReconciler([OWNER])
    rec.apply(sw, flood(A, B))
    sw.flows.clear()           # ovs-vswitchd restarted
    rec.forget()               # the controller saw it reconnect
    result = rec.apply(sw, flood(A, B))
    assert result.audited and result.added == 2
    assert set(sw.flows.values()) == {A, B}


def test_an_audit_repairs_what_changed_behind_our_back():
    sw, rec = FakeSwitch(), FlowReconciler([OWNER], audit_interval=0)
    rec.apply(sw, flood(A, B))
    del sw.flows[next(c for c, f in sw.flows.items() if f == B)]   # ovs-ofctl del-flows by hand
    rec.apply(sw, flood(A, B))
    assert set(sw.flows.values()) == {A, B}


def test_conflicting_flows_and_flows_outside_owned_tables_are_refused():
    sw = FakeSwitch()
    result = FlowReconciler([OWNER]).apply(sw, flood(B, B2, Flow.of(20, 1, {}, [])))
    assert len(result.errors) == 2
    assert "two flows with one match and priority" in result.errors[0]
    assert "table 20, which it does not own" in result.errors[1]
    assert set(sw.flows.values()) == {B}


def test_a_refused_add_is_reported_and_the_next_pass_reads_the_switch_again():
    sw, rec = FakeSwitch(), FlowReconciler([OWNER])
    sw.refuse.add(B.cookie(OWNER.cookie))
    result = rec.apply(sw, flood(A, B))
    assert result.errors and set(sw.flows.values()) == {A}
    sw.refuse.clear()
    dumps = sw.dumps
    rec.apply(sw, flood(A, B))
    assert sw.dumps == dumps + 1 and set(sw.flows.values()) == {A, B}


def test_cookies_name_their_owner_and_their_flow():
    assert A.cookie(1) >> 48 == 1 and A.cookie(2) >> 48 == 2
    assert A.cookie(1) == Flow.of(0, 100, {"in_port": 1}, [goto(10)]).cookie(1)
    assert B.cookie(1) != B2.cookie(1)


def test_owners_may_not_share_tables_or_cookies():
    with pytest.raises(ValueError):
        FlowReconciler([OWNER, Owner("other", 2, (10,))])
    with pytest.raises(ValueError):
        FlowReconciler([OWNER, Owner("other", 1, (30,))])
    with pytest.raises(ValueError):
        FlowReconciler([Owner("zero", 0, (30,))])
