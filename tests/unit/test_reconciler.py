"""The reconciler: writes before removals, one batch per map and phase, a failing
entry reported and the rest still applied, ARRAY slots zeroed, datapath-written
maps never audited, nothing when in sync, failures retried by the next run."""
import errno

import pytest

from dfxdp.controller.apps.base import Entry
from dfxdp.controller.reconciler import Reconciler
from dfxdp.datapath.libbpf import BatchError

KEY_SIZE, VALUE_SIZE = 4, 8


class FakeMap:
    """A map with the kernel's batch semantics: entries applied in order, the first
    failure stops the batch and says how many were done. Keys are ints, values short strings."""

    percpu = False
    value_size = VALUE_SIZE

    def __init__(self, name, log, fail_on=(), slots=0):
        self.name, self.log, self.fail_on = name, log, set(fail_on)
        self.is_array = bool(slots)
        self.data = {self.encode_key(k): bytes(VALUE_SIZE) for k in range(slots)}  # an ARRAY's slots always exist
        self.batches = []  # (command, entries) per call: the syscalls a real map makes
        self.reads = 0

    def raw_iter(self):
        self.reads += 1
        return iter(list(self.data.items()))

    def encode_key(self, key):
        return key.to_bytes(KEY_SIZE, "little")

    def encode_value(self, value):
        return value.encode().ljust(VALUE_SIZE, b"\0")

    def _entries(self, keys):
        return [bytes(keys[i:i + KEY_SIZE]) for i in range(0, len(keys), KEY_SIZE)]

    def update_batch_raw(self, keys, values):
        keys = self._entries(keys)
        self.batches.append(("update", len(keys)))
        for i, key in enumerate(keys):
            number = int.from_bytes(key, "little")
            if number in self.fail_on or (self.is_array and key not in self.data):
                raise BatchError(errno.ENOSPC, "map full", i)
            self.log.append(("write", self.name, number))
            self.data[key] = bytes(values[i * VALUE_SIZE:(i + 1) * VALUE_SIZE])

    def delete_batch_raw(self, keys):
        keys = self._entries(keys)
        self.batches.append(("delete", len(keys)))
        for i, key in enumerate(keys):
            if self.is_array:
                raise BatchError(errno.EINVAL, "an array slot cannot be deleted", i)
            if key not in self.data:
                raise BatchError(errno.ENOENT, "no such key", i)
            self.log.append(("remove", self.name, int.from_bytes(key, "little")))
            del self.data[key]


def value(text):
    return text.encode().ljust(VALUE_SIZE, b"\0")


def test_add_before_delete_across_maps_and_noop_when_in_sync():
    log = []
    maps = {"a": FakeMap("a", log), "b": FakeMap("b", log)}
    rec = Reconciler(maps, ["a", "b"])
    rec.apply([Entry("a", 1, "x"), Entry("b", 2, "y")])
    log.clear()
    result = rec.apply([Entry("a", 3, "z"), Entry("b", 2, "y2")])  # 1 moves to 3, 2 changes
    assert log == [("write", "a", 3), ("write", "b", 2), ("remove", "a", 1)]
    assert (result.written, result.removed) == (2, 1)
    log.clear()
    assert not rec.apply([Entry("a", 3, "z"), Entry("b", 2, "y2")]).changed and log == []


def test_one_batch_per_map_and_phase_in_the_order_the_apps_gave():
    log = []
    maps = {"a": FakeMap("a", log), "b": FakeMap("b", log)}
    rec = Reconciler(maps, ["a", "b"])
    first = [Entry("a", k, "v") for k in (5, 1, 9, 3)] + [Entry("b", k, "w") for k in range(100)]
    assert rec.apply(first).written == 104
    assert maps["a"].batches == [("update", 4)] and maps["b"].batches == [("update", 100)]
    assert [k for _, name, k in log if name == "a"] == [5, 1, 9, 3]
    for m in maps.values():
        m.batches.clear()
    result = rec.apply([Entry("a", 5, "v2"), Entry("a", 7, "v")] + [Entry("b", k, "w") for k in range(50)])
    assert (result.written, result.removed) == (2, 53)
    assert maps["a"].batches == [("update", 2), ("delete", 3)] and maps["b"].batches == [("delete", 50)]


def test_managed_map_with_no_desired_entries_is_emptied():
    log = []
    maps = {"a": FakeMap("a", log)}
    rec = Reconciler(maps, ["a"])
    rec.apply([Entry("a", 1, "x")])
    rec.apply([])
    assert maps["a"].data == {}


def test_a_batch_failing_midway_reports_that_entry_and_applies_the_rest():
    log = []
    maps = {"a": FakeMap("a", log, fail_on={2, 4})}
    rec = Reconciler(maps, ["a"])
    result = rec.apply([Entry("a", k, "x") for k in range(1, 7)])
    assert result.written == 4 and len(result.errors) == 2
    assert result.errors[0] == "write in a, key 02000000: No space left on device"
    assert "key 04000000" in result.errors[1]
    assert sorted(int.from_bytes(k, "little") for k in maps["a"].data) == [1, 3, 5, 6]
    # the kernel stopped at 2 and at 4; each resumption starts right after the failed entry
    assert maps["a"].batches == [("update", 6), ("update", 4), ("update", 2)]
    maps["a"].fail_on.clear()
    retry = rec.apply([Entry("a", k, "x") for k in range(1, 7)])
    assert (retry.written, retry.errors) == (2, [])


def test_a_key_already_gone_counts_as_removed_and_the_batch_goes_on():
    log = []
    m = FakeMap("a", log)
    rec = Reconciler({"a": m}, ["a"], audit_interval=3600)
    rec.apply([Entry("a", k, "x") for k in range(4)])
    del m.data[m.encode_key(1)]  # e.g. evicted: the reconciler does not know
    result = rec.apply([])
    assert (result.removed, result.errors, m.data) == (4, [], {})


def test_maps_are_written_in_declared_order_not_alphabetically():
    log = []
    maps = {"z_policy": FakeMap("z_policy", log), "a_ports": FakeMap("a_ports", log)}
    Reconciler(maps, ["z_policy", "a_ports"]).apply([Entry("a_ports", 1, "p"), Entry("z_policy", 2, "q")])
    assert [name for _, name, _ in log] == ["z_policy", "a_ports"]


def test_reads_back_only_on_audit_and_repairs_what_changed_behind_its_back():
    log = []
    m = FakeMap("a", log)
    rec = Reconciler({"a": m}, ["a"], audit_interval=3600)
    assert rec.apply([Entry("a", 1, "x")]).audited and m.reads == 1
    for _ in range(3):
        result = rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")] if _ else [Entry("a", 1, "x")])
        assert not result.audited
    assert m.reads == 1 and m.data == {m.encode_key(1): value("x"), m.encode_key(2): value("y")}
    m.data[m.encode_key(1)] = value("tampered")
    m.data[m.encode_key(9)] = value("stray")
    assert not rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")]).changed  # not seen without a read
    result = rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")], audit=True)
    assert result.audited and (result.written, result.removed) == (1, 1)
    assert m.data == {m.encode_key(1): value("x"), m.encode_key(2): value("y")}


def test_audit_interval_elapsed_reads_back():
    log = []
    m = FakeMap("a", log)
    rec = Reconciler({"a": m}, ["a"], audit_interval=0)
    rec.apply([Entry("a", 1, "x")])
    rec.apply([Entry("a", 1, "x")])
    assert m.reads == 2


def test_failed_removal_is_retried_from_memory():
    log = []
    m = FakeMap("a", log)
    rec = Reconciler({"a": m}, ["a"], audit_interval=3600)
    rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")])
    real_delete = m.delete_batch_raw
    m.delete_batch_raw = lambda keys: (_ for _ in ()).throw(BatchError(errno.EBUSY, "busy", 0))
    assert rec.apply([Entry("a", 1, "x")]).errors
    m.delete_batch_raw = real_delete
    assert rec.apply([Entry("a", 1, "x")]).removed == 1 and m.data == {m.encode_key(1): value("x")}


def test_a_pass_given_the_touched_keys_compares_only_those_and_retries_failures():
    log = []
    m = FakeMap("a", log, fail_on={3})
    rec = Reconciler({"a": m}, ["a"], audit_interval=3600)
    k = m.encode_key
    wanted = {"a": {k(1): value("x"), k(2): value("y"), k(3): value("z")}}
    assert len(rec.apply_wanted(wanted).errors) == 1  # 3 failed
    m.data[k(1)] = value("tampered")                 # behind the reconciler's back: only an audit sees it
    wanted["a"][k(2)] = value("y2")
    m.fail_on.clear()
    result = rec.apply_wanted(wanted, touched={"a": {k(2): value("y")}})  # each touched key with its value before
    assert (result.written, result.removed) == (2, 0)  # 2 touched, 3 retried; 1 not touched: left alone
    assert m.data == {k(1): value("tampered"), k(2): value("y2"), k(3): value("z")}
    del wanted["a"][k(1)]
    assert rec.apply_wanted(wanted, touched={"a": {k(1): value("x")}}).removed == 1 and k(1) not in m.data


def test_array_stale_slot_is_zeroed_and_a_zero_slot_counts_as_empty():
    log = []
    m = FakeMap("slots", log, slots=8)
    rec = Reconciler({"slots": m}, ["slots"], audit_interval=3600)
    assert rec.apply([Entry("slots", 1, "a"), Entry("slots", 2, "b")]).written == 2
    result = rec.apply([Entry("slots", 1, "a")])
    assert (result.written, result.removed, result.errors) == (0, 1, [])
    assert m.data[m.encode_key(2)] == bytes(VALUE_SIZE) and len(m.data) == 8  # zeroed, not deleted
    assert m.batches[-1] == ("update", 1) and not any(cmd == "delete" for cmd, _ in m.batches)
    # a fresh read sees six zero slots and one in use: nothing to do
    audit = rec.apply([Entry("slots", 1, "a"), Entry("slots", 3, "")], audit=True)  # "" encodes as zeros
    assert audit.audited and not audit.changed and not audit.errors
    out_of_range = rec.apply([Entry("slots", 1, "a"), Entry("slots", 99, "c")])
    assert out_of_range.errors == ["write in slots, key 63000000: No space left on device"]


class Learned(FakeMap):
    """A map the datapath fills itself: the reconciler must never read it."""

    def raw_iter(self):
        raise AssertionError(f"{self.name} was read back: the datapath's own entries would be judged stale")


def test_datapath_written_maps_are_never_audited_and_only_own_entries_removed():
    log = []
    neigh, owned = Learned("neigh", log), FakeMap("a", log)
    learned = {neigh.encode_key(k): value("learned") for k in (10, 11)}
    neigh.data.update(learned)
    rec = Reconciler({"a": owned, "neigh": neigh}, ["a"], ["neigh"], audit_interval=0)
    for _ in range(3):
        assert rec.apply([Entry("a", 1, "x")], audit=True).audited
    assert neigh.data == learned and neigh.batches == []
    # an app may seed an entry there: it is written, and later removed, alone
    assert rec.apply([Entry("a", 1, "x"), Entry("neigh", 12, "static")]).written == 1
    assert rec.apply([Entry("a", 1, "x")]).removed == 1
    assert neigh.data == learned


def test_declarations_that_cannot_work_are_refused():
    log = []
    with pytest.raises(ValueError, match="both app-owned and datapath-written: a"):
        Reconciler({"a": FakeMap("a", log)}, ["a"], ["a"])
    with pytest.raises(ValueError, match="map gone is declared by an app but not in the datapath"):
        Reconciler({}, ["gone"])
    counters = FakeMap("counters", log)
    counters.percpu = True
    with pytest.raises(ValueError, match="per-CPU maps cannot be app-owned"):
        Reconciler({"counters": counters}, ["counters"])
    Reconciler({"counters": counters}, [], ["counters"])  # as the datapath's own: fine


def test_an_entry_for_an_undeclared_map_is_refused_before_any_write():
    log = []
    maps = {"a": FakeMap("a", log), "other": FakeMap("other", log)}
    rec = Reconciler(maps, ["a"])
    with pytest.raises(ValueError, match="an entry for map other, which no app declares"):
        rec.apply([Entry("a", 1, "x"), Entry("other", 2, "y")])
    assert log == [] and maps["other"].reads == 0


def test_passes_leave_no_reference_cycles():
    """Every pass (full, touched keys, audit) is freed by reference counting: after the agent
    freezes its cache, the collector's full collections come rarely, and an audit's garbage
    holds every key it read (tens of MiB at 100,000 ports)."""
    import gc
    log = []
    m = FakeMap("a", log)
    rec = Reconciler({"a": m}, ["a"], audit_interval=3600)
    k = m.encode_key
    wanted = {"a": {k(n): value(str(n)) for n in range(50)}}
    gc.collect()
    gc.disable()
    try:
        rec.apply_wanted(wanted)                                    # full
        wanted["a"][k(1)] = value("new")
        rec.apply_wanted(wanted, touched={"a": {k(1): value("1")}})  # touched keys
        m.data[k(2)] = value("tampered")
        assert rec.apply([Entry("a", n, str(n)) for n in range(50)], audit=True).audited
        assert gc.collect() == 0
    finally:
        gc.enable()
