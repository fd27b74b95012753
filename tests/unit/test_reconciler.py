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
