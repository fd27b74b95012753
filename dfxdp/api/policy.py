"""Who may do what: oslo.policy with Neutron's default rules (its "new defaults", the personas
admin, member and reader; Keystone's role implications make an admin a member and a member a
reader). A deployment may override any rule in a policy file (`[oslo_policy] policy_file` in
the dfxdp config file), as for Neutron.

Rules are checked against a target: the object (its `project_id`, and `shared`, `router:external`
of a network), with the owner of its parent where a rule needs it: `network:project_id` for
subnets and ports (a network's owner manages the ports on it), `security_group:project_id` for
rules. An action on an attribute has its own rule, `<action>_<kind>:<attribute>`: checked when a
request sets the attribute; for `get`, an attribute the request may not see is left out of the
answer (a member does not see a network's provider attributes or a port's binding details).
"""
from __future__ import annotations

from oslo_config import cfg
from oslo_policy import policy

ADMIN = "rule:context_is_admin"
PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_READER = "role:reader and project_id:%(project_id)s"
NET_OWNER_MEMBER = "role:member and project_id:%(network:project_id)s"
NET_OWNER_READER = "role:reader and project_id:%(network:project_id)s"
GROUP_OWNER_MEMBER = "role:member and project_id:%(security_group:project_id)s"
GROUP_OWNER_READER = "role:reader and project_id:%(security_group:project_id)s"


def any_of(*checks: str) -> str:
    return " or ".join(f"({c})" for c in checks)


ADMIN_OR_MEMBER = any_of(ADMIN, PROJECT_MEMBER)
ADMIN_OR_READER = any_of(ADMIN, PROJECT_READER)
ADMIN_OR_NET_OWNER_MEMBER = any_of(ADMIN, NET_OWNER_MEMBER)
PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")
BINDING_DETAILS = ("binding:vif_type", "binding:vif_details", "binding:host_id", "binding:profile")

GENERAL = {
    "context_is_admin": "role:admin",
    "admin_only": ADMIN,
    "shared": "'True':%(shared)s",             # a shared network (or a subnet on one), pool or address scope
    "external": "'True':%(router:external)s",  # an external network (or a subnet on one)
    # an action no rule names (e.g. on a kind registered from outside, dfxdp/nb/kinds.py): its
    # project's or an admin's, as Neutron's default rule
    "default": any_of(ADMIN, "project_id:%(project_id)s"),
}

# action: check string
RULES = {
    **{f"{action}_network": ADMIN_OR_MEMBER for action in ("create", "update", "delete")},
    "get_network": any_of(ADMIN_OR_READER, "rule:shared", "rule:external"),
    **{f"{action}_network:{attr}": ADMIN for action in ("create", "update")
       for attr in ("shared", "router:external", "is_default", "segments", *PROVIDER)},
    **{f"get_network:{attr}": ADMIN for attr in ("segments", *PROVIDER)},

    "create_subnet": ADMIN_OR_NET_OWNER_MEMBER,
    # (a subnet of an external network is not shown to others: they reach it through routers)
    "get_subnet": any_of(ADMIN_OR_READER, NET_OWNER_READER, "rule:shared"),
    "update_subnet": any_of(ADMIN_OR_MEMBER, NET_OWNER_MEMBER),
    "delete_subnet": any_of(ADMIN_OR_MEMBER, NET_OWNER_MEMBER),

    "create_port": ADMIN_OR_MEMBER,
    "get_port": any_of(ADMIN_OR_READER, NET_OWNER_READER),
    "update_port": any_of(ADMIN_OR_MEMBER, NET_OWNER_MEMBER),
    "delete_port": any_of(ADMIN_OR_MEMBER, NET_OWNER_MEMBER),
    **{f"{action}_port:{attr}": ADMIN_OR_NET_OWNER_MEMBER for action in ("create", "update")
       for attr in ("mac_address", "fixed_ips:ip_address", "port_security_enabled", "allowed_address_pairs")},
    **{f"{action}_port:fixed_ips:subnet_id": any_of(ADMIN_OR_NET_OWNER_MEMBER, "rule:shared")
       for action in ("create", "update")},
    **{f"{action}_port:{attr}": ADMIN for action in ("create", "update")
       for attr in ("binding:host_id", "binding:profile")},
    **{f"get_port:{attr}": ADMIN for attr in BINDING_DETAILS},

    # adding and removing interfaces is updating the router
    **{f"{action}_router": ADMIN_OR_MEMBER for action in ("create", "update", "delete")},
    "get_router": ADMIN_OR_READER,
    **{f"{action}_router:external_gateway_info:{attr}": ADMIN for action in ("create", "update")
       for attr in ("enable_snat", "external_fixed_ips")},

    **{f"{action}_floatingip": ADMIN_OR_MEMBER for action in ("create", "update", "delete")},
    "get_floatingip": ADMIN_OR_READER,
    "create_floatingip:floating_ip_address": ADMIN,

    **{f"{action}_security_group": ADMIN_OR_MEMBER for action in ("create", "update", "delete")},
    "get_security_group": ADMIN_OR_READER,
    "create_security_group_rule": any_of(ADMIN, f"({PROJECT_MEMBER}) and ({GROUP_OWNER_MEMBER})"),
    "get_security_group_rule": any_of(ADMIN_OR_READER, GROUP_OWNER_READER),
    "delete_security_group_rule": any_of(ADMIN_OR_MEMBER, GROUP_OWNER_MEMBER),

    **{f"{action}_agent": ADMIN for action in ("get", "update", "delete")},

    "get_quota": ADMIN_OR_READER,  # of one project; every project's (no target project): admins
    "update_quota": ADMIN,
    "delete_quota": ADMIN,

    **{f"{action}_subnetpool": ADMIN_OR_MEMBER for action in ("create", "update", "delete")},
    "get_subnetpool": any_of(ADMIN_OR_READER, "rule:shared"),
    **{f"{action}_subnetpool:{attr}": ADMIN for action in ("create", "update") for attr in ("shared", "is_default")},

    **{f"{action}_address_scope": ADMIN_OR_MEMBER for action in ("create", "update", "delete")},
    "get_address_scope": any_of(ADMIN_OR_READER, "rule:shared"),
    **{f"{action}_address_scope:shared": ADMIN for action in ("create", "update")},

    # Octavia's resources (its own defaults are role-based too; here: owner and admin)
    **{f"{action}_{kind}": ADMIN_OR_MEMBER for action in ("create", "update", "delete")
       for kind in ("loadbalancer", "listener", "pool", "member", "healthmonitor")},
    **{f"get_{kind}": ADMIN_OR_READER for kind in ("loadbalancer", "listener", "pool", "member", "healthmonitor")},
}


class Policy:
    """The rules, on a config that may name a policy file overriding them."""

    def __init__(self, conf: cfg.ConfigOpts | None = None):
        if conf is None:
            conf = cfg.ConfigOpts()
            conf(args=[], project="dfxdp", default_config_files=[])
        self.enforcer = policy.Enforcer(conf)
        self.enforcer.register_defaults([policy.RuleDefault(name, check) for name, check in {**GENERAL,
                                                                                              **RULES}.items()])

    def allowed(self, action: str, target: dict, roles: frozenset[str], project: str | None) -> bool:
        return self.enforcer.enforce(action, target, {"roles": sorted(roles), "project_id": project})

    def attribute_rules(self, action: str, kind: str) -> dict[str, str]:
        """{attribute: rule} of `action` on `kind` (`create_port:mac_address` → mac_address)."""
        prefix = f"{action}_{kind}:"
        return {name[len(prefix):]: name for name in self.enforcer.registered_rules if name.startswith(prefix)}
