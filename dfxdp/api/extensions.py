"""GET /v2.0/extensions: the Neutron API extensions dfxdp implements, and only those.

Clients (openstackclient, openstacksdk, Tempest's api_extensions) decide what to send by
this list: an alias belongs here once the attributes or resources it names work end to end
(docs/api.md says what each covers here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dfxdp.nb.errors import NotFound

UPDATED = "2026-11-25T00:00:00-00:00"


@dataclass(frozen=True)
class Extension:
    alias: str
    name: str
    description: str
    updated: str = UPDATED
    links: list = field(default_factory=list)


EXTENSIONS = [
    Extension("router", "Neutron L3 Router", "Routers, their interfaces and gateways, and floating IPs."),
    Extension("external-net", "Neutron external network", "The router:external attribute of networks."),
    Extension("extraroute", "Neutron Extra Route", "Static routes (routes) on routers."),
    Extension("security-group", "security-group", "Security groups and their rules."),
    Extension("port-security", "Port Security", "port_security_enabled on networks and ports."),
    Extension("allowed-address-pairs", "Allowed Address Pairs", "allowed_address_pairs on ports."),
    Extension("binding", "Port Binding", "binding:host_id, binding:vnic_type, binding:vif_type and "
                                         "binding:vif_details on ports."),
    Extension("net-mtu", "Network MTU", "The mtu attribute of networks."),
    Extension("dns-integration", "DNS Integration", "dns_name and dns_assignment on ports, dns_domain on "
                                                     "networks; the names answered by the XDP DNS responder."),
    Extension("extra_dhcp_opt", "Neutron Extra DHCP options", "extra_dhcp_opts on ports, honoured by the "
                                                              "agent's DHCP answers."),
    Extension("net-mtu-writable", "Network MTU (writable)", "A network's mtu set at creation or changed."),
    Extension("standard-attr-description", "standard-attr-description", "A description on every resource."),
    Extension("standard-attr-timestamp", "Resource timestamps", "created_at and updated_at on every resource."),
    Extension("standard-attr-revisions", "Resource revision numbers", "revision_number on every resource."),
    Extension("project-id", "project_id field enabled", "project_id (and tenant_id) on every resource."),
    Extension("agent", "agent", "Each dfxdp agent (one per chassis) as a Neutron agent: list, show, update "
                                "admin_state_up and description, delete."),
    Extension("standard-attr-tag", "Tag support for resources with standard attribute",
              "Tags on networks, subnets, ports, routers, floating IPs, security groups and their rules: "
              "the …/tags sub-resource and the tags, tags-any, not-tags, not-tags-any list filters."),
    Extension("tag", "Tag support", "Tags on networks (the older alias of standard-attr-tag)."),
    Extension("tag-creation", "Tag creation extension", "POST …/tags adds several tags to a resource at once."),
    Extension("tag-ports-during-bulk-creation", "Tag Ports During Bulk Creation",
              "tags in the body of a port create, bulk or not (and of every other resource's create)."),
    Extension("ip-substring-filtering", "IP address substring filtering",
              "fixed_ips=ip_address_substr=<part of an address> in port lists."),
    Extension("quotas", "Quota management support", "Per-project limits on networks, subnets, ports, "
              "routers, floating IPs, security groups and rules, enforced on create (/v2.0/quotas)."),
    Extension("quota_details", "Quota details extension", "Limit, used and reserved per resource "
              "(/v2.0/quotas/<project>/details)."),
    Extension("subnet_allocation", "Subnet Allocation", "Subnet pools (/v2.0/subnetpools); subnets allocated "
              "from one by subnetpool_id and prefixlen."),
    Extension("address-scope", "Address scope", "Address scopes (/v2.0/address-scopes), subnet pools' "
              "address_scope_id, networks' ipv4_address_scope and ipv6_address_scope (API only: routers do "
              "not separate scopes)."),
    Extension("default-subnetpools", "Default Subnetpools", "is_default on subnet pools and "
              "use_default_subnetpool on subnets."),
    Extension("pagination", "Pagination support", "limit, marker and page_reverse on lists."),
    Extension("sorting", "Sorting support", "sort_key and sort_dir on lists."),
]


def document(ext: Extension) -> dict:
    return asdict(ext)


def listing() -> dict:
    return {"extensions": [document(e) for e in EXTENSIONS]}


def show(alias: str) -> dict:
    for ext in EXTENSIONS:
        if ext.alias == alias:
            return {"extension": document(ext)}
    raise NotFound("HTTPNotFound", f"Extension with alias {alias} does not exist")
