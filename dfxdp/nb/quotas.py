"""Neutron's quotas: how many objects of each kind a project may have, enforced on create.

A project's limits are Neutron's defaults (DEFAULTS, or the server's own) overridden by what
an admin set (`PUT /v2.0/quotas/<project>`), stored at /dfxdp/quota/<project> as the JSON of
the overrides; -1 is unlimited. A create (one object or a bulk, counted as a whole) of a kind
with a limit counts the project's objects of that kind by their ownership keys
(dfxdp/nb/index.py) inside its transaction, guarded as a list: two racing creates cannot
both take the last unit. Past the limit: 409 OverQuota with Neutron's message. Counting
starts with the ownership keys: objects stored before them are not counted.
"""
from __future__ import annotations

import json
from typing import Any

from .db.base import Store
from .errors import BadRequest, Conflict
from .index import index_key, owned_prefix
from .txn import QUOTA, Txn, run_txn

UNLIMITED = -1
MAX_LIMIT = 2 ** 31 - 1
# Neutron's defaults (neutron.conf [quotas] quota_<resource>); a subnet pool has none
DEFAULTS = {"network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
            "security_group": 10, "security_group_rule": 100}


def quota_key(project: str) -> str:
    return f"{QUOTA}{project}"


class OverQuota(Conflict):
    def __init__(self, kinds: list[str]):
        super().__init__("OverQuota", f"Quota exceeded for resources: {sorted(kinds)}.")


def check_limits(body: Any) -> dict[str, int]:
    """The body of PUT /v2.0/quotas/<project>: {"quota": {<resource>: <int ≥ -1>, …}}."""
    if not isinstance(body, dict) or not isinstance(body.get("quota"), dict):
        raise BadRequest("HTTPBadRequest", "Request body must be a JSON object with a 'quota' object")
    unknown = sorted(set(body["quota"]) - set(DEFAULTS))
    if unknown:
        raise BadRequest("HTTPBadRequest", f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    limits = {}
    for kind, value in body["quota"].items():
        number = value if isinstance(value, int) and not isinstance(value, bool) else \
            int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else None
        if number is None:
            raise BadRequest("HTTPBadRequest", f"Invalid input for {kind}. Reason: '{value}' is not an integer.")
        if not UNLIMITED <= number <= MAX_LIMIT:
            raise BadRequest("HTTPBadRequest", f"Invalid input for {kind}. Reason: '{number}' is not in range "
                                               f"{UNLIMITED} through {MAX_LIMIT}.")
        limits[kind] = number
    return limits


class Quotas:
    """Limits and usage per project on an NB store; `defaults` replace Neutron's where given."""

    def __init__(self, store: Store, defaults: dict[str, int] | None = None):
        self.store = store
        self.defaults = {**DEFAULTS, **(defaults or {})}

    def _overrides(self, txn: Txn, project: str) -> dict[str, int]:
        raw = txn.get_raw(quota_key(project))
        return json.loads(raw) if raw else {}

    def limits(self, project: str) -> dict[str, int]:
        return {**self.defaults, **self._overrides(Txn(self.store), project)}

    def projects(self) -> dict[str, dict[str, int]]:
        """Every project an admin gave limits of its own -> its limits."""
        kvs, _revision = self.store.range(QUOTA)
        return {kv.key[len(QUOTA):]: {**self.defaults, **json.loads(kv.value)} for kv in kvs}

    def details(self, project: str) -> dict[str, dict[str, int]]:
        """quota_details: limit, used and reserved (always 0: no reservations) per resource."""
        txn = Txn(self.store)
        limits = {**self.defaults, **self._overrides(txn, project)}
        return {kind: {"limit": limit, "used": len(txn.keys_under(owned_prefix(project, kind))), "reserved": 0}
                for kind, limit in limits.items()}

    def update(self, project: str, limits: dict[str, int]) -> dict[str, int]:
        def body_fn(txn: Txn) -> dict[str, int]:
            overrides = {**self._overrides(txn, project), **limits}
            txn.set_raw(quota_key(project), json.dumps(overrides, sort_keys=True).encode())
            return {**self.defaults, **overrides}

        return run_txn(self.store, body_fn)

    def reset(self, project: str) -> None:
        run_txn(self.store, lambda txn: txn.release(quota_key(project)))

    def check(self, txn: Txn, kind: str, project: str, wanted: int) -> None:
        """Refuse (OverQuota) `wanted` more objects of kind for project past its limit."""
        if kind not in self.defaults:
            return
        limit = self._overrides(txn, project).get(kind, self.defaults[kind])
        if limit == UNLIMITED:
            return
        used = txn.count_guarded(owned_prefix(project, kind), index_key("project", project, kind))
        if used + wanted > limit:
            raise OverQuota([kind])
