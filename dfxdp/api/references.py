"""Cross-project references: what a request names besides its own object, checked as
Neutron's plugin checks it, with the caller's context.

Neutron reads what a body names (a router's gateway network, a floating IP's port, a subnet's
pool …) with the caller's context, so a reference the caller may not see (dfxdp/api/scope.py)
is 404 as if absent. Beyond seeing it, some references must be the caller's own (Neutron's
own wording for each):
- a port's security groups are its project's (else 404 SecurityGroupNotFound), except on
  ports Neutron trusts (device_owner network:*);
- a security group rule's remote group is the rule's project's (else 404 SecurityGroupNotFound);
- a floating IP's port is the floating IP's project's (else 400);
- a router interface's subnet is the caller's: a subnet of a shared network is refused as
  Neutron refuses one of a globally shared network (dfxdp has no RBAC shares); a port the
  caller sees but does not own may be added only holding an address from its subnet's pools;
- a subnet pool in a shared address scope the caller does not own cannot be changed;
- the default subnet pool a subnet asks for (use_default_subnetpool) is none if the caller
  may not see it;
- Octavia's objects join only the caller's own load balancer, listener or pool (Octavia's 403
  PolicyForbidden); a VIP's or member's subnet, network or port is seen by the caller (404).
An admin (and the operator's request without a project) may name anything; a reference to
nothing at all is left to the NB, which answers the same 404.
"""
from __future__ import annotations

import ipaddress
from typing import Callable

from dfxdp.nb import validate
from dfxdp.nb.errors import BadRequest, NotFound, not_found

from .scope import Context, Forbidden, Lookup, Parents, visible

Getter = Callable[[dict], object]


def _nested(outer: str, inner: str) -> Getter:
    return lambda body: body[outer].get(inner) if isinstance(body.get(outer), dict) else None


# kind -> (what in its body names another object, that object's kind): each must be visible
VISIBLE: dict[str, tuple[tuple[Getter, str], ...]] = {
    "subnet": ((lambda b: b.get("subnetpool_id"), "subnetpool"),),
    "subnetpool": ((lambda b: b.get("address_scope_id"), "address_scope"),),
    "router": ((_nested("external_gateway_info", "network_id"), "network"),),
    "floatingip": ((lambda b: b.get("floating_network_id"), "network"), (lambda b: b.get("port_id"), "port")),
    # Octavia checks a VIP's and a member's subnet, network, port with the caller's token too
    "loadbalancer": ((lambda b: b.get("vip_subnet_id"), "subnet"), (lambda b: b.get("vip_network_id"), "network"),
                     (lambda b: b.get("vip_port_id"), "port")),
    "member": ((lambda b: b.get("subnet_id"), "subnet"),),
}
# Octavia's kinds -> the fields naming the load balancer's objects they join: Octavia authorizes
# the request against that object's project (403 for another's)
OCTAVIA_PARENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "listener": (("loadbalancer_id", "loadbalancer"), ("default_pool_id", "pool")),
    "pool": (("loadbalancer_id", "loadbalancer"), ("listener_id", "listener")),
    "member": (("pool_id", "pool"),),
    "healthmonitor": (("pool_id", "pool"),),
}
TRUSTED_OWNER_PREFIX = "network:"  # neutron-lib's is_port_trusted


class _Check:
    """One request's references, its lookups shared."""

    def __init__(self, ctx: Context, lookup: Lookup):
        self.ctx, self.lookup, self.parents = ctx, lookup, Parents(lookup)

    def seen(self, kind: str, obj_id: object) -> dict:
        """The object named, {} if there is none; 404 if the caller may not see it."""
        doc = self.parents.get(kind, obj_id) if isinstance(obj_id, str) and obj_id else {}
        if doc and not visible(self.ctx, kind, [doc], self.lookup):
            raise not_found(kind, obj_id)
        return doc


def check(ctx: Context, kind: str, body: dict, target: dict, lookup: Lookup, old: dict | None = None) -> None:
    """The references `body` (a create's, or the changes of an update of `old`) sets on the
    object `target` (as it will be)."""
    if ctx.unrestricted:
        return
    refs = _Check(ctx, lookup)
    for get, ref_kind in VISIBLE.get(kind, ()):
        refs.seen(ref_kind, get(body))
    if ctx.is_admin:
        return
    if kind == "subnet" and not body.get("subnetpool_id") and validate.boolean(
            body.get("use_default_subnetpool", False)):
        _check_default_pool(refs, body.get("ip_version", 4))
    owner = target.get("project_id")
    for field, parent_kind in OCTAVIA_PARENTS.get(kind, ()):
        parent = refs.parents.get(parent_kind, body.get(field)) if isinstance(body.get(field), str) else {}
        if parent and parent.get("project_id") != owner:
            raise Forbidden("PolicyForbidden", "Policy does not allow this request to be performed.")
    if kind == "port" and body.get("security_groups") and \
            not str(target.get("device_owner") or "").startswith(TRUSTED_OWNER_PREFIX):
        others = [sg for sg in body["security_groups"]
                  if refs.parents.get("security_group", sg).get("project_id") != owner]
        if others:
            raise NotFound("SecurityGroupNotFound", f"Security group {', '.join(others)} does not exist")
    if kind == "security_group_rule" and body.get("remote_group_id"):
        group = refs.parents.get("security_group", body["remote_group_id"])
        if group and group.get("project_id") != owner:
            raise not_found("security_group", body["remote_group_id"])
    if kind == "floatingip" and body.get("port_id"):
        port = refs.parents.get("port", body["port_id"])
        if port and port.get("project_id") != owner:
            raise BadRequest("BadRequest", f"Bad floatingip request: Cannot process floating IP association with "
                                           f"Port {port['id']}, since that port is owned by a different project.")
    if kind == "subnetpool" and old and old.get("address_scope_id"):
        scope = refs.seen("address_scope", old["address_scope_id"])
        if scope and scope.get("project_id") != ctx.project:
            raise BadRequest("IllegalSubnetPoolUpdate", f"Illegal subnetpool update : subnetpool {old['id']} cannot "
                                                        f"be updated when associated with shared address scope "
                                                        f"{scope['id']}.")


def _check_default_pool(refs: _Check, ip_version: object) -> None:
    """Neutron looks the default pool up with the caller's context: one it may not see is none."""
    defaults = [p for p in refs.lookup("subnetpool") if p.get("is_default") and p.get("ip_version") == ip_version]
    if defaults and not visible(refs.ctx, "subnetpool", defaults, refs.lookup):
        raise BadRequest("BadRequest", f"Bad subnet request: No default subnetpool for IPv{ip_version} found.")


def check_interface(ctx: Context, body: dict, lookup: Lookup, adding: bool) -> None:
    """A router interface's subnet or port (add_router_interface, remove_router_interface)."""
    if ctx.unrestricted:
        return
    refs = _Check(ctx, lookup)
    subnet = refs.seen("subnet", body.get("subnet_id"))
    port = refs.seen("port", body.get("port_id"))
    if not adding or ctx.is_admin:
        return
    if subnet and subnet.get("project_id") != ctx.project:
        raise BadRequest("BadRequest", f"Bad router request: Cannot add interface to router because subnet "
                                       f"{subnet['id']} is not owned by project making the request.")
    for fixed in port.get("fixed_ips") or []:
        of = refs.parents.get("subnet", fixed["subnet_id"])
        if of and of.get("project_id") != ctx.project and not _in_pools(of, fixed["ip_address"]):
            raise BadRequest("BadRequest", f"Bad router request: Cannot add interface to router because specified "
                                           f"port {port['id']} has an IP address out of the allocation pool of "
                                           f"subnet {of['id']}, which is not owned by the project making the "
                                           f"request.")


def _in_pools(subnet: dict, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ipaddress.ip_address(p["start"]) <= ip <= ipaddress.ip_address(p["end"])
               for p in subnet.get("allocation_pools") or [])
