"""The reconciler: writes before removals, nothing when in sync, failures reported
and retried by the next run."""
from dfxdp.controller.apps.base import Entry
from dfxdp.controller.reconciler import Reconciler


class FakeMap:
    def __init__(self, name, log, fail_on=()):
        self.name, self.data, self.log, self.fail_on = name, {}, log, set(fail_on)

    def raw_items(self):
        return dict(self.data)

    def encode_key(self, key):
        return str(key).encode()

    def encode_value(self, value):
        return str(value).encode()

    def update(self, key, value, flags=0):
        if key in self.fail_on:
            raise OSError(28, "map full")
        self.log.append(("write", self.name, key))
        self.data[key] = value

    def delete(self, key):
        self.log.append(("remove", self.name, key))
        return self.data.pop(key, None) is not None


def test_add_before_delete_across_maps_and_noop_when_in_sync():
    log = []
    maps = {"a": FakeMap("a", log), "b": FakeMap("b", log)}
    rec = Reconciler(maps, ["a", "b"])
    rec.apply([Entry("a", 1, "x"), Entry("b", 2, "y")])
    log.clear()
    result = rec.apply([Entry("a", 3, "z"), Entry("b", 2, "y2")])  # 1 moves to 3, 2 changes
    assert log == [("write", "a", b"3"), ("write", "b", b"2"), ("remove", "a", b"1")]
    assert (result.written, result.removed) == (2, 1)
    log.clear()
    assert not rec.apply([Entry("a", 3, "z"), Entry("b", 2, "y2")]).changed and log == []


def test_managed_map_with_no_desired_entries_is_emptied():
    log = []
    maps = {"a": FakeMap("a", log)}
    rec = Reconciler(maps, ["a"])
    rec.apply([Entry("a", 1, "x")])
    rec.apply([])
    assert maps["a"].data == {}


def test_failures_are_reported_and_the_rest_still_applied():
    log = []
    maps = {"a": FakeMap("a", log, fail_on={b"2"})}
    rec = Reconciler(maps, ["a"])
    result = rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")])
    assert result.errors and "map full" in result.errors[0]
    assert maps["a"].data == {b"1": b"x"}
    maps["a"].fail_on.clear()
    assert rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")]).written == 1  # the retry


def test_maps_are_written_in_declared_order_not_alphabetically():
    log = []
    maps = {"z_policy": FakeMap("z_policy", log), "a_ports": FakeMap("a_ports", log)}
    Reconciler(maps, ["z_policy", "a_ports"]).apply([Entry("a_ports", 1, "p"), Entry("z_policy", 2, "q")])
    assert [name for _, name, _ in log] == ["z_policy", "a_ports"]


class CountingMap(FakeMap):
    reads = 0

    def raw_items(self):
        self.reads += 1
        return super().raw_items()


def test_reads_back_only_on_audit_and_repairs_what_changed_behind_its_back():
    log = []
    m = CountingMap("a", log)
    rec = Reconciler({"a": m}, ["a"], audit_interval=3600)
    assert rec.apply([Entry("a", 1, "x")]).audited and m.reads == 1
    for _ in range(3):
        result = rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")] if _ else [Entry("a", 1, "x")])
        assert not result.audited
    assert m.reads == 1 and m.data == {b"1": b"x", b"2": b"y"}
    m.data[b"1"] = b"tampered"
    m.data[b"9"] = b"stray"
    assert not rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")]).changed  # not seen without a read
    result = rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")], audit=True)
    assert result.audited and (result.written, result.removed) == (1, 1)
    assert m.data == {b"1": b"x", b"2": b"y"}


def test_audit_interval_elapsed_reads_back():
    log = []
    m = CountingMap("a", log)
    rec = Reconciler({"a": m}, ["a"], audit_interval=0)
    rec.apply([Entry("a", 1, "x")])
    rec.apply([Entry("a", 1, "x")])
    assert m.reads == 2


def test_failed_removal_is_retried_from_memory():
    log = []
    m = FakeMap("a", log)
    rec = Reconciler({"a": m}, ["a"], audit_interval=3600)
    rec.apply([Entry("a", 1, "x"), Entry("a", 2, "y")])
    real_delete = m.delete
    m.delete = lambda key: (_ for _ in ()).throw(OSError(16, "busy"))
    assert rec.apply([Entry("a", 1, "x")]).errors
    m.delete = real_delete
    assert rec.apply([Entry("a", 1, "x")]).removed == 1 and m.data == {b"1": b"x"}


def test_entries_handed_out_again_are_not_encoded_again():
    log = []

    class EncodingCounter(FakeMap):
        encodes = 0

        def encode_key(self, key):
            self.encodes += 1
            return super().encode_key(key)

    m = EncodingCounter("a", log)
    rec = Reconciler({"a": m}, ["a"])
    same, changed = Entry("a", 1, "x"), Entry("a", 2, "y")
    rec.apply([same, changed])
    rec.apply([same, Entry("a", 2, "y2")])
    assert m.encodes == 3 and m.data == {b"1": b"x", b"2": b"y2"}
