"""Project scoping: which objects a request sees and may change, as Neutron's default policy.

The request's project and roles come from the headers keystonemiddleware's auth_token sets
(X-Project-Id, X-Roles); without Keystone (`--auth none` or the static token) a client may
send them itself. A request with no project is the operator's, as before scoping: it sees
and changes everything, and what it creates belongs to the server's default project.

A project's member (no `admin` role):
- creates objects of its own project only, and no provider network (403 otherwise);
- sees its own objects; networks that are shared or router:external and their subnets;
  the ports on networks it owns; the rules of its own security groups;
- sees no agents;
- changes and deletes only its own objects (403 for one it merely sees, 404 for one it
  cannot see, as Neutron).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fastapi import Request

from dfxdp.nb.errors import NBError, not_found
from dfxdp.nb.segments import PROVIDER_FIELDS

ADMIN_ROLE = "admin"


class Forbidden(NBError):
    status = 403


@dataclass(frozen=True)
class Context:
    project: str | None  # None: the operator's request (no project given)
    admin: bool

    @property
    def unrestricted(self) -> bool:
        return self.project is None or self.admin


def context(request: Request) -> Context:
    project = request.headers.get("x-project-id") or request.headers.get("x-tenant-id") or None
    roles = {r.strip().lower() for r in request.headers.get("x-roles", "").split(",") if r.strip()}
    return Context(project, ADMIN_ROLE in roles)


def _public_networks(networks: list[dict]) -> set[str]:
    return {n["id"] for n in networks if n.get("shared") or n.get("router:external")}


def visible(ctx: Context, kind: str, docs: list[dict], lookup: Callable[[str], list[dict]]) -> list[dict]:
    """The docs the request may see; lookup(kind) lists other objects some rules need."""
    if ctx.unrestricted:
        return docs
    own = [d for d in docs if d.get("project_id") == ctx.project]
    if kind == "agent":  # Neutron's policy: agents are the admin's alone
        return []
    if kind == "subnetpool":
        return [d for d in docs if d.get("project_id") == ctx.project or d.get("shared")]
    if kind == "network":
        public = _public_networks(docs)
        return [d for d in docs if d.get("project_id") == ctx.project or d["id"] in public]
    if kind == "subnet":
        public = _public_networks(lookup("network"))
        return [d for d in docs if d.get("project_id") == ctx.project or d["network_id"] in public]
    if kind == "port":
        owned = {n["id"] for n in lookup("network") if n.get("project_id") == ctx.project}
        return [d for d in docs if d.get("project_id") == ctx.project or d["network_id"] in owned]
    if kind == "security_group_rule":
        groups = {g["id"] for g in lookup("security_group") if g.get("project_id") == ctx.project}
        return [d for d in docs if d.get("project_id") == ctx.project or d["security_group_id"] in groups]
    return own


def check_create(ctx: Context, kind: str, obj: dict) -> dict:
    """The object with its owner: the request's project unless an admin (or the operator)
    names another."""
    named = obj.get("project_id") or obj.get("tenant_id")
    if ctx.unrestricted and (ctx.project is None or named):
        return obj
    admin_only = sorted(f for f in PROVIDER_FIELDS if f in obj)
    if admin_only and not ctx.unrestricted:
        raise Forbidden("PolicyNotAuthorized", f"(rule:create_{kind}:{admin_only[0]}) is disallowed by policy: "
                                               f"only an admin sets {', '.join(admin_only)}")
    if named and named != ctx.project:
        raise Forbidden("PolicyNotAuthorized", f"(rule:create_{kind}) is disallowed by policy: project "
                                               f"{ctx.project} cannot create objects of project {named}")
    return {**obj, "project_id": ctx.project}


def check_show(ctx: Context, kind: str, doc: dict, lookup: Callable[[str], list[dict]]) -> dict:
    if not visible(ctx, kind, [doc], lookup):
        raise not_found(kind, doc["id"])
    return doc


def check_change(ctx: Context, kind: str, doc: dict, lookup: Callable[[str], list[dict]], action: str) -> None:
    check_show(ctx, kind, doc, lookup)
    if not ctx.unrestricted and doc.get("project_id") != ctx.project:
        raise Forbidden("PolicyNotAuthorized", f"(rule:{action}_{kind}) is disallowed by policy")
