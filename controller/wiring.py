"""One chassis' apps and the reconciler that owns their maps, built in one place
for the agent, the bench and the tests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from .apps import APPS, App, Entry, LocalView
from .reconciler import AUDIT_INTERVAL, MapLike, ReconcileResult, Reconciler


@dataclass
class DatapathControl:
    apps: list[App]
    reconciler: Reconciler

    def desired(self, view: LocalView) -> Iterator[Entry]:
        return (entry for app in self.apps for entry in app.desired(view))

    def apply(self, view: LocalView, audit: bool = False) -> ReconcileResult:
        """Bring the maps to what the apps derive from `view`."""
        return self.reconciler.apply(self.desired(view), audit=audit)


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
