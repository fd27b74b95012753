"""Project scoping: which objects a request sees and may change, by the policy rules of
dfxdp/api/policy.py (Neutron's defaults unless a policy file overrides them).

The request's project and roles come from the headers keystonemiddleware's auth_token sets
from the token (X-Project-Id, X-Roles; dfxdp/api/auth.py), having dropped any the client sent.
Without Keystone (`--auth none` or the static token) a client may send them itself: then
roles are expanded as Keystone's default implied roles expand them (admin → member → reader),
a project without X-Roles is a member, and a request with no project is the operator's, as
before scoping: it sees and changes everything, and what it creates belongs to the server's
default project unless the body names one.

Neutron's answers: an object the request may not see is 404 (as if absent); one it sees but
may not change, or a create it may not make, is 403 PolicyNotAuthorized; an attribute it may
not see is left out of the answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fastapi import Request

from dfxdp.nb.errors import NBError, not_found

from .policy import Policy

# Keystone's default role implications (keystone-manage bootstrap): each role implies the next.
IMPLIED_ROLES = {"admin": "member", "manager": "member", "member": "reader"}
Lookup = Callable[[str], list[dict]]  # kind → every object of that kind


class Forbidden(NBError):
    status = 403


@dataclass(frozen=True)
class Context:
    project: str | None  # None: the operator's request (no project given, no Keystone)
    roles: frozenset[str]
    policy: Policy

    @property
    def unrestricted(self) -> bool:
        return self.project is None

    @property
    def is_admin(self) -> bool:
        """Neutron's context.is_admin: the policy's context_is_admin (or the operator's request)."""
        return self.allowed("context_is_admin", {})

    def allowed(self, rule: str, target: dict) -> bool:
        return self.unrestricted or self.policy.allowed(rule, target, self.roles, self.project)

    def enforce(self, rule: str, target: dict, why: str = "") -> None:
        if not self.allowed(rule, target):
            raise Forbidden("PolicyNotAuthorized", f"(rule:{rule}) is disallowed by policy{why}")


def with_implied(roles: set[str]) -> frozenset[str]:
    expanded = set(roles)
    while True:
        more = {IMPLIED_ROLES[r] for r in expanded if r in IMPLIED_ROLES} - expanded
        if not more:
            return frozenset(expanded)
        expanded |= more


def context(request: Request) -> Context:
    project = request.headers.get("x-project-id") or request.headers.get("x-tenant-id") or None
    roles = {r.strip().lower() for r in request.headers.get("x-roles", "").split(",") if r.strip()}
    if project and not roles:
        roles = {"member"}
    return Context(project, with_implied(roles), request.app.state.policy)


class Parents:
    """The parents some rules look at (a subnet's or port's network, a rule's group), read once
    per request and only when needed."""

    def __init__(self, lookup: Lookup):
        self.lookup = lookup
        self.by_kind: dict[str, dict[str, dict]] = {}

    def get(self, kind: str, obj_id: str | None) -> dict:
        if kind not in self.by_kind:
            self.by_kind[kind] = {d["id"]: d for d in self.lookup(kind)}
        return self.by_kind[kind].get(obj_id or "", {})


# kinds whose rules look at a parent: the parent's kind and the field naming it
PARENT = {"subnet": ("network", "network_id"), "port": ("network", "network_id"),
          "security_group_rule": ("security_group", "security_group_id")}


def _target(kind: str, doc: dict, parents: Parents) -> dict:
    """What the rules of `kind` check: the object and its parent's owner (and, for a subnet,
    whether its network is shared or external)."""
    if kind in ("subnet", "port"):
        network = parents.get("network", doc.get("network_id"))
        target = {**doc, "network:project_id": network.get("project_id")}
        if kind == "subnet":
            target.update(shared=network.get("shared", False), **{"router:external": network.get("router:external",
                                                                                                   False)})
        return target
    if kind == "security_group_rule":
        group = parents.get("security_group", doc.get("security_group_id"))
        return {**doc, "security_group:project_id": group.get("project_id")}
    return doc


def _sets(obj: dict, attribute: str) -> bool:
    """Does the request body set this attribute (`a:b` also reads as `b` inside `a`, the way
    Neutron names sub-attributes, e.g. external_gateway_info:enable_snat)?"""
    if attribute in obj:
        return True
    outer, sep, inner = attribute.partition(":")
    value = obj.get(outer)
    if not sep or value is None:
        return False
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, dict) and _sets(item, inner) for item in items)


def shown(ctx: Context, kind: str, doc: dict, target: dict | None = None) -> dict:
    """The object without the attributes the request may not see."""
    if ctx.unrestricted:
        return doc
    hidden = [attr for attr, rule in ctx.policy.attribute_rules("get", kind).items()
              if attr in doc and not ctx.allowed(rule, target or doc)]
    return {k: v for k, v in doc.items() if k not in hidden} if hidden else doc


def visible(ctx: Context, kind: str, docs: list[dict], lookup: Lookup) -> list[dict]:
    """The docs the request may see, as it may see them."""
    if ctx.unrestricted:
        return docs
    parents = Parents(lookup)
    answer = []
    for doc in docs:
        target = _target(kind, doc, parents)
        if ctx.allowed(f"get_{kind}", target):
            answer.append(shown(ctx, kind, doc, target))
    return answer


def _enforce_attributes(ctx: Context, action: str, kind: str, obj: dict, target: dict) -> None:
    for attr, rule in ctx.policy.attribute_rules(action, kind).items():
        if _sets(obj, attr):
            ctx.enforce(rule, target, f": only an admin (or the network's owner) sets {attr}")


def check_create(ctx: Context, kind: str, obj: dict, lookup: Lookup) -> dict:
    """The object with its owner: the request's project unless the body names another (which
    only an admin, or the operator, may)."""
    if ctx.unrestricted:
        return obj
    owner = obj.get("project_id") or obj.get("tenant_id") or ctx.project
    obj = {**obj, "project_id": owner, **({"tenant_id": owner} if "tenant_id" in obj else {})}
    parents = Parents(lookup)
    if kind in PARENT:
        parent_kind, field = PARENT[kind]
        parent_id = obj.get(field)
        if not isinstance(parent_id, str):
            return obj  # no parent named: the NB refuses the body (400), as Neutron's validation before its policy
        parent = parents.get(parent_kind, parent_id)
        if not parent or not visible(ctx, parent_kind, [parent], lookup):
            raise not_found(parent_kind, parent_id)
    target = _target(kind, obj, parents)
    why = f": project {ctx.project} cannot create objects of project {owner}" if owner != ctx.project else ""
    ctx.enforce(f"create_{kind}", target, why)
    _enforce_attributes(ctx, "create", kind, obj, target)
    return obj


def check_show(ctx: Context, kind: str, doc: dict, lookup: Lookup) -> dict:
    """The object as the request may see it; 404 if it may not."""
    answer = visible(ctx, kind, [doc], lookup)
    if not answer:
        raise not_found(kind, doc["id"])
    return answer[0]


def check_change(ctx: Context, kind: str, doc: dict, lookup: Lookup, action: str,
                 changes: dict | None = None) -> None:
    """404 for an object the request may not see, 403 for one it may not change (`action`:
    update or delete) or an attribute in `changes` it may not set."""
    check_show(ctx, kind, doc, lookup)
    if ctx.unrestricted:
        return
    target = _target(kind, doc, Parents(lookup))
    ctx.enforce(f"{action}_{kind}", target)
    if changes:
        _enforce_attributes(ctx, action, kind, changes, target)
