"""Chassis: what each agent registers and keeps up to date about its node (shown on
/v2.0/agents, dfxdp/api/agents.py)."""
from __future__ import annotations

import time
from typing import Any

from ..txn import Txn, now, run_txn
from .base import Family


class Chassis(Family):
    def upsert(self, name: str, tunnel_ip: str, **attrs: Any) -> dict:
        doc = self.nb.validate("chassis", {"id": name, "name": name, "tunnel_ip": tunnel_ip,
                                           "heartbeat": time.time(), "project_id": self.nb.default_project, **attrs})

        def body_fn(txn: Txn) -> dict:
            old = txn.get("chassis", name)
            new = dict(doc)
            if old:  # what an operator set on it (PUT /v2.0/agents) outlives the agent's restarts
                new.update(admin_state_up=old.get("admin_state_up", True), description=old["description"])
            new["revision_number"] = (old["revision_number"] + 1) if old else 1
            new["created_at"] = old["created_at"] if old else now()
            new["updated_at"] = now()
            new["key"] = old["key"] if old else self.nb.new_key(txn, "chassis")
            txn.put("chassis", new)
            return new

        return run_txn(self.nb.store, body_fn)

    def heartbeat(self, name: str) -> dict:
        def body_fn(txn: Txn) -> dict:
            chassis = txn.require("chassis", name)
            chassis.update(heartbeat=time.time(), revision_number=chassis["revision_number"] + 1)
            txn.put("chassis", chassis)
            return chassis

        return run_txn(self.nb.store, body_fn)

    def set_facts(self, name: str, **facts: Any) -> dict:
        """What an agent publishes about its chassis beyond the heartbeat (e.g. igmp_groups)."""
        def body_fn(txn: Txn) -> dict:
            chassis = txn.require("chassis", name)
            new = self.nb.validate("chassis", {**chassis, **facts})
            new.update(revision_number=chassis["revision_number"] + 1, updated_at=now())
            txn.put("chassis", new)
            return new

        return run_txn(self.nb.store, body_fn)
