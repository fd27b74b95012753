"""Security groups and their rules, and each project's one default group (made on its
first need, as Neutron does)."""
from __future__ import annotations

from ..db.base import KV
from ..errors import BadRequest, Conflict
from ..rules import validate_rule
from ..txn import ALLOC, Txn, obj_key, run_txn
from .base import Family, Hooks, children


def default_group_key(project: str) -> str:
    """The reservation that makes a project's default security group one of a kind."""
    return f"{ALLOC}default-sg/{project}"


class SecurityGroups(Family):
    def __init__(self, nb):
        super().__init__(nb)
        # project -> its default group's reservation as last seen: a create then needs no read of
        # it, only the guard (a stale one fails the commit, is forgotten, and the retry reads it)
        self._default_groups: dict[str, KV] = {}

    def hooks(self) -> dict[str, Hooks]:
        return {"security_group": Hooks(self._create_group, self._update_group, self._delete_group,
                                        self._show_rules, (children("security_group_rule", "security_group"),)),
                "security_group_rule": Hooks(self._create_rule)}

    def default_group(self, txn: Txn, project: str) -> str:
        """The id of the project's default group, made on its first need: its reservation
        key lets exactly one of any number of racing first requests create it."""
        key = default_group_key(project)
        remembered = self._default_groups.get(project)
        if remembered:
            txn.assume(remembered)
            txn.on_conflict(lambda: self._default_groups.pop(project, None))
        held = txn.get_raw(key)
        if held is not None:
            if txn.stored(key):
                self._default_groups[project] = txn.stored(key)
            return held.decode()
        sg_id = self._legacy_default_group(txn, project) or self._create_default_group(txn, project)
        txn.reserve(key, sg_id)

        def remember(revision: int) -> None:
            self._default_groups[project] = KV(key, sg_id.encode(), revision, revision)

        txn.on_commit(remember)
        return sg_id

    @staticmethod
    def _legacy_default_group(txn: Txn, project: str) -> str | None:
        """A default group a store kept from before default groups were reserved."""
        for sg in txn.list("security_group"):
            if sg["name"] == "default" and sg["project_id"] == project:
                txn.get_raw(obj_key("security_group", sg["id"]))  # guard: it must still be there
                return sg["id"]
        return None

    def _create_default_group(self, txn: Txn, project: str) -> str:
        sg = self.nb.child(txn, "security_group", {"name": "default", "description": "Default security group"},
                           project)
        for ethertype in ("IPv4", "IPv6"):
            self.nb.child(txn, "security_group_rule", {"security_group_id": sg["id"], "direction": "egress",
                                                       "ethertype": ethertype}, project)
            self.nb.child(txn, "security_group_rule", {"security_group_id": sg["id"], "direction": "ingress",
                                                       "ethertype": ethertype, "remote_group_id": sg["id"]}, project)
        return sg["id"]

    def ensure_default(self, project: str) -> str:
        return run_txn(self.nb.store, lambda txn: self.default_group(txn, project))

    def _create_group(self, txn: Txn, sg: dict) -> None:
        if sg["name"] == "default":  # the project's one default group exists by now (NEEDS_DEFAULT_GROUP)
            raise Conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
        for ethertype in ("IPv4", "IPv6"):  # Neutron: every new group allows all egress
            self.nb.child(txn, "security_group_rule", {"security_group_id": sg["id"], "direction": "egress",
                                                       "ethertype": ethertype}, sg["project_id"])

    def _create_rule(self, txn: Txn, rule: dict) -> None:
        txn.require("security_group", rule["security_group_id"])
        validate_rule(rule)
        if rule["remote_group_id"] and rule["remote_ip_prefix"]:
            raise BadRequest("SecurityGroupRemoteGroupAndRemoteIpPrefix",
                             "Only remote_ip_prefix or remote_group_id may be provided.")
        if rule["remote_group_id"]:
            txn.require("security_group", rule["remote_group_id"])
        same = ("security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                "remote_ip_prefix", "remote_group_id")
        for other in txn.children("security_group_rule", "security_group", rule["security_group_id"]):
            if all(other.get(f) == rule.get(f) for f in same):
                raise Conflict("SecurityGroupRuleExists", f"Security group rule already exists. Rule id is {other['id']}.")

    @staticmethod
    def _update_group(txn: Txn, old: dict, new: dict) -> None:
        if old["name"] == "default" and new["name"] != "default":
            raise Conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
        if new["name"] == "default" and old["name"] != "default":
            raise Conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")

    def _delete_group(self, txn: Txn, sg: dict) -> None:
        users = [p["id"] for p in txn.children("port", "security_group", sg["id"])]
        if users:
            raise Conflict("SecurityGroupInUse", f"Security Group {sg['id']} in use by port(s) {', '.join(users)}")
        key = default_group_key(sg["project_id"])
        if sg["name"] == "default" and txn.get_raw(key) == sg["id"].encode():
            txn.release(key)  # the project's next request makes a new one
            txn.on_commit(lambda _revision: self._default_groups.pop(sg["project_id"], None))
        for rule in txn.children("security_group_rule", "security_group", sg["id"]):
            if rule["security_group_id"] == sg["id"]:
                txn.delete("security_group_rule", rule["id"])
            elif rule.get("remote_group_id") == sg["id"]:
                raise Conflict("SecurityGroupInUse", f"Security Group {sg['id']} is referenced by rule {rule['id']}")

    def _show_rules(self, docs: list[dict]) -> None:
        found = Txn(self.nb.store).children_of("security_group_rule", "security_group", [doc["id"] for doc in docs])
        for doc in docs:  # (a group's children also hold the rules of others naming it as their remote group)
            doc["security_group_rules"] = [{**rule, "tenant_id": rule["project_id"]} for rule in found[doc["id"]]
                                           if rule["security_group_id"] == doc["id"]]
