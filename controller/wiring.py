"""One chassis' apps and the reconciler that owns their maps, built in one place
for the agent, the bench and the tests."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from dfxdp.datapath.libbpf import lib

from .apps import APPS, App, Entry, LocalView
from .desired import Change, DesiredState
from .reconciler import AUDIT_INTERVAL, MapLike, ReconcileResult, Reconciler


@dataclass
class DatapathControl:
    apps: list[App]
    reconciler: Reconciler
    state: DesiredState = field(init=False)

    def __post_init__(self) -> None:
        self.state = DesiredState(self.apps, self.reconciler.encode)
        self._complete = False  # the state holds every scope's entries (no pass failed half-way)

    def desired(self, view: LocalView) -> Iterator[Entry]:
        return (entry for app in self.apps for entry in app.desired(view))

    def apply(self, view: LocalView, audit: bool = False, changes: Iterable[Change] | None = None) -> ReconcileResult:
        """Bring the maps to what the apps derive from `view`: everything (changes None), or
        after `changes` only what they touch (controller/desired.py)."""
        complete, self._complete = self._complete, False
        if changes is None or not complete:  # app by app: a port is reachable before the DNS names are derived
            # a pass that failed half-way may have changed the state the reconciler compares
            # with: read the maps back then
            result = self._rebuild(view, audit or not complete)
        else:
            result = self.reconciler.apply_wanted(self.state.wanted, self.state.update(view, changes), audit=audit)
        self._complete = True
        return result

    def _rebuild(self, view: LocalView, audit: bool) -> ReconcileResult:
        steps = self.state.rebuild_steps(view)  # first: from here on state.wanted is the new state
        result = self.reconciler.apply_wanted(self.state.wanted, audit=audit, steps=steps)
        lib.dfxdp_release_free_memory()  # what the last state and the pass' own garbage held
        return result


def build_datapath_control(maps: Mapping[str, MapLike], apps: Iterable[type[App]] = APPS,
                           audit_interval: float = AUDIT_INTERVAL,
                           options: Mapping[type[App], Mapping[str, Any]] | None = None) -> DatapathControl:
    """The apps (in the order their maps are written: see controller/apps/__init__.py) and a
    reconciler over `maps` (a pipeline's) owning what the apps declare. `options`: keyword
    arguments of the apps that take some (the agent's DNS settings)."""
    instances = [cls(**(options or {}).get(cls, {})) for cls in apps]
    reconciler = Reconciler(maps, [name for app in instances for name in app.maps],
                            [name for app in instances for name in app.datapath_maps], audit_interval)
    return DatapathControl(instances, reconciler)
