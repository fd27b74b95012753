"""The NB model: what operators describe, in Neutron's (and Octavia's) shapes.

Each resource has one pydantic class. Request bodies are validated against it
(unknown fields refused); the stored document is its dump by alias, so field
names are exactly Neutron's (`router:external`, `binding:host_id`, …). Fields
the server owns (ids, keys, status, revision) are filled by the service, never
taken from a client.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator,
                      model_validator)

from . import validate

DEFAULT_PROJECT = "dfxdp"  # project of requests that carry none (no keystone in front)


class Strict(BaseModel):
    """Unknown fields refused; every string at most 255 characters, Neutron's limit for names,
    descriptions and the other string attributes (ids, device owners, host names …)."""

    # defer_build: a model's validator is built on its first use, not at import; the agent imports
    # the models (through dfxdp/nb/kinds.py) but validates none, and its start is timed
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_max_length=validate.NAME_MAX_LEN,
                              defer_build=True)


class Resource(Strict):
    """Common fields. `key` is the small integer the datapath uses (a network's VNI)."""

    id: str = ""
    name: str = ""
    description: str = ""
    project_id: str = ""
    revision_number: int = 0
    key: int = 0
    created_at: str = ""
    updated_at: str = ""
    tags: list[str] = []  # standard-attr-tag: given at creation or changed through …/tags (dfxdp/nb/tags.py)

    # Fields a client may set at create time / change later (service-owned ones excluded).
    SERVER_OWNED: ClassVar[set[str]] = {"id", "revision_number", "key", "created_at", "updated_at", "tags"}
    IMMUTABLE: ClassVar[set[str]] = set()


SubnetCIDR = Annotated[str, AfterValidator(validate.subnet_cidr)]  # no host bits (IPv4)
Prefix = Annotated[str, AfterValidator(validate.prefix)]            # host bits dropped
IP = Annotated[str, AfterValidator(validate.ip),
               WithJsonSchema({"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]})]
MAC = Annotated[str, AfterValidator(validate.mac),
                WithJsonSchema({"type": "string", "pattern": "^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$"})]
# Neutron's convert_to_boolean: true/false, 0/1, "true"/"false"/"1"/"0" in any case
Bool = Annotated[bool, BeforeValidator(validate.boolean), WithJsonSchema({"anyOf": [
    {"type": "boolean"}, {"enum": [0, 1]},
    {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|0|1)$"}]}, mode="validation")]


def _none_is_empty(value):
    """Neutron's convert_none_to_empty_list: null clears a list attribute."""
    return [] if value is None else value


NoneIsEmpty = BeforeValidator(_none_is_empty)


class Network(Resource):
    admin_state_up: Bool = True
    mtu: int = Field(1450, ge=68, le=9000)
    router_external: Bool = Field(False, alias="router:external")
    port_security_enabled: Bool = True
    shared: Bool = False
    dns_domain: str = ""
    status: str = "ACTIVE"
    subnets: list[str] = []
    # Neutron's provider extension, set by an admin at creation (dfxdp/nb/families/networks.py):
    # vxlan (the default, its VNI the network's key) or, for router:external networks, flat or
    # vlan on a physical network that agents map to a NIC (`dfxdp agent --bridge-mappings`)
    provider_network_type: Optional[Literal["vxlan", "flat", "vlan"]] = Field(None, alias="provider:network_type")
    provider_physical_network: Optional[str] = Field(None, alias="provider:physical_network")
    provider_segmentation_id: Optional[int] = Field(None, alias="provider:segmentation_id")
    # Neutron's address-scope: the scopes of its subnets' pools, derived when shown (dfxdp/nb/families/networks.py)
    ipv4_address_scope: Optional[str] = None
    ipv6_address_scope: Optional[str] = None
    SERVER_OWNED: ClassVar[set[str]] = Resource.SERVER_OWNED | {"status", "subnets", "ipv4_address_scope",
                                                                 "ipv6_address_scope"}
    IMMUTABLE: ClassVar[set[str]] = {"provider:network_type", "provider:physical_network",
                                     "provider:segmentation_id"}


class Route(Strict):
    destination: SubnetCIDR
    nexthop: IP


class AllocationPool(Strict):
    start: IP
    end: IP


IPv6Mode = Literal["slaac", "dhcpv6-stateful", "dhcpv6-stateless"]  # neutron-lib constants.IPV6_MODES


class Subnet(Resource):
    network_id: str
    cidr: Optional[SubnetCIDR] = None  # none: allocated from its subnet pool (dfxdp/nb/families/subnetpools.py)
    ip_version: Literal[4, 6] = 4
    subnetpool_id: Optional[str] = None
    # create-only requests of subnet_allocation, dropped once the cidr is allocated
    prefixlen: Optional[int] = Field(None, ge=0, le=128)
    use_default_subnetpool: Bool = False
    gateway_ip: Optional[IP] | Literal[""] = ""  # "" = default (first address), None = no gateway
    allocation_pools: list[AllocationPool] = []
    dns_nameservers: Annotated[Optional[list[IP]], NoneIsEmpty] = []
    host_routes: Annotated[Optional[list[Route]], NoneIsEmpty] = []
    enable_dhcp: Bool = True
    # Neutron's IPv6 attributes (checked by validate.check_ipv6_modes): how VMs learn their
    # address (ipv6_address_mode: slaac and dhcpv6-stateless give each port its EUI-64 address,
    # dfxdp/nb/ipam.py) and what the router advertises (ipv6_ra_mode: controller/apps/ra.py)
    ipv6_ra_mode: Optional[IPv6Mode] = None
    ipv6_address_mode: Optional[IPv6Mode] = None
    IMMUTABLE: ClassVar[set[str]] = {"network_id", "cidr", "ip_version", "subnetpool_id", "prefixlen",
                                     "use_default_subnetpool", "ipv6_ra_mode", "ipv6_address_mode"}

    @model_validator(mode="after")
    def _same_version(self) -> "Subnet":
        if self.cidr is not None:  # else checked once its pool gave it one
            validate.check_subnet_fields(self.model_dump())
        return self


def _int_string(value):
    """Neutron's convert_to_int: "4" is 4."""
    return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class AddressScope(Resource):
    """Neutron's address-scope: subnet pools whose prefixes are unique within it
    (dfxdp/nb/families/address_scopes.py)."""

    ip_version: Annotated[Literal[4, 6], BeforeValidator(_int_string)]
    shared: Bool = False
    IMMUTABLE: ClassVar[set[str]] = {"ip_version"}


class SubnetPool(Resource):
    """Neutron's subnet_allocation: prefixes subnets are allocated from (dfxdp/nb/families/subnetpools.py)."""

    prefixes: Annotated[list[Prefix], Field(min_length=1)]
    ip_version: int = 4  # of its prefixes
    default_prefixlen: Optional[int] = Field(None, ge=0, le=128)  # none: min_prefixlen
    min_prefixlen: Optional[int] = Field(None, ge=0, le=128)      # none: 8 (IPv4), 64 (IPv6)
    max_prefixlen: Optional[int] = Field(None, ge=0, le=128)      # none: 32, 128
    default_quota: Optional[int] = Field(None, ge=0)  # per project, in /32s (IPv4) or /64s (IPv6)
    shared: Bool = False
    is_default: Bool = False
    address_scope_id: Optional[str] = None  # its prefixes overlap no other pool's of the scope
    SERVER_OWNED: ClassVar[set[str]] = Resource.SERVER_OWNED | {"ip_version"}


class FixedIP(Strict):
    subnet_id: Optional[str] = None
    ip_address: Optional[IP] = None


class AddressPair(Strict):
    ip_address: Annotated[str, AfterValidator(validate.ip_or_subnet)]
    mac_address: Optional[MAC] = None  # none: the port's MAC (filled in by the service)


def _not_null(value):
    """An attribute that may be left out but not set to null."""
    if value is None:
        raise ValueError("None is not a valid value")
    return value


class ExtraDhcpOpt(Strict):
    """Neutron's extra_dhcp_opt: a DHCP option the port's answers carry (docs/dhcp.md). As
    Neutron, the name is not checked here (dnsmasq names, or the option's number); the DHCP
    app skips, and counts, what it cannot encode."""

    opt_name: Annotated[str, Field(min_length=1)]
    opt_value: Optional[str] = None
    ip_version: Literal[4, 6] = 4


class Port(Resource):
    network_id: str
    admin_state_up: Bool = True
    mac_address: Annotated[str, AfterValidator(lambda v: validate.mac(v) if v else v), WithJsonSchema(
        {"type": "string", "pattern": "^(([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2})?$"})] = ""  # "": generated
    # left out (None): Neutron's default of one address per IP version; []: no address
    fixed_ips: Annotated[Optional[list[FixedIP]], BeforeValidator(_not_null)] = None
    device_owner: str = ""
    device_id: str = ""
    binding_host_id: str = Field("", alias="binding:host_id")
    # Neutron's port binding: only "normal" ports (a tap the agent finds by name); vif_type and
    # vif_details are derived from binding:host_id when shown (dfxdp/nb/families/ports.py)
    binding_vnic_type: Literal["normal"] = Field("normal", alias="binding:vnic_type")
    binding_vif_type: str = Field("unbound", alias="binding:vif_type")
    binding_vif_details: dict[str, Any] = Field({}, alias="binding:vif_details")
    status: str = "DOWN"
    security_groups: Optional[list[str]] = None
    port_security_enabled: Optional[Bool] = None
    allowed_address_pairs: Annotated[Optional[list[AddressPair]], NoneIsEmpty] = []
    dns_name: str = ""
    dns_assignment: list[dict[str, str]] = []  # computed by the service (dfxdp/nb/dns.py)
    extra_dhcp_opts: list[ExtraDhcpOpt] = []
    SERVER_OWNED: ClassVar[set[str]] = Resource.SERVER_OWNED | {"status", "dns_assignment", "binding:vif_type",
                                                                 "binding:vif_details"}
    IMMUTABLE: ClassVar[set[str]] = {"network_id"}

    @field_validator("allowed_address_pairs")
    @classmethod
    def _pairs(cls, pairs: list[AddressPair]) -> list[AddressPair]:
        validate.check_address_pairs([p.model_dump() for p in pairs])
        return pairs


class GatewayInfo(Strict):
    network_id: str
    enable_snat: Bool = True
    external_fixed_ips: list[FixedIP] = []


class NoGateway(Strict):
    """An empty gateway ({}, what Tempest and several clients send): Neutron reads it as none."""


def _no_gateway(value):
    return None if isinstance(value, NoGateway) else value


class Router(Resource):
    admin_state_up: Bool = True
    status: str = "ACTIVE"
    external_gateway_info: Annotated[Optional[GatewayInfo | NoGateway], AfterValidator(_no_gateway)] = None
    routes: Annotated[Optional[list[Route]], NoneIsEmpty] = []
    SERVER_OWNED: ClassVar[set[str]] = Resource.SERVER_OWNED | {"status"}


class SecurityGroup(Resource):
    stateful: Bool = True
    security_group_rules: list[dict[str, Any]] = []
    SERVER_OWNED: ClassVar[set[str]] = Resource.SERVER_OWNED | {"security_group_rules"}


def _ethertype(value):
    """Neutron's convert_ethertype_to_case_insensitive: ipv4 is IPv4."""
    return {"ipv4": "IPv4", "ipv6": "IPv6"}.get(value.lower(), value) if isinstance(value, str) else value


Ethertype = Annotated[Literal["IPv4", "IPv6"], BeforeValidator(_ethertype),
                      WithJsonSchema({"type": "string", "pattern": "^[Ii][Pp][Vv][46]$"}, mode="validation")]


class SecurityGroupRule(Resource):
    security_group_id: str
    direction: Literal["ingress", "egress"]
    ethertype: Ethertype = "IPv4"
    protocol: Optional[str] = None  # a name of dfxdp/nb/protocols.py or a number 0-255, as a string
    port_range_min: Optional[int] = None
    port_range_max: Optional[int] = None
    remote_ip_prefix: Optional[Prefix] = None
    remote_group_id: Optional[str] = None
    IMMUTABLE: ClassVar[set[str]] = {"security_group_id", "direction", "ethertype", "protocol", "port_range_min",
                 "port_range_max", "remote_ip_prefix", "remote_group_id"}

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol(cls, v):
        """Neutron's convert_protocol spelling: numbers as strings, names in lower case; the
        service decides which are valid (with Neutron's error type)."""
        if v is None or v == "" or v == "any":
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v.lower() if isinstance(v, str) else v


class FloatingIP(Resource):
    floating_network_id: str
    floating_ip_address: Optional[IP] = None
    port_id: Optional[str] = None
    fixed_ip_address: Optional[IP] = None
    router_id: Optional[str] = None
    status: str = "DOWN"
    SERVER_OWNED: ClassVar[set[str]] = Resource.SERVER_OWNED | {"router_id", "status"}
    IMMUTABLE: ClassVar[set[str]] = {"floating_network_id", "floating_ip_address"}



# --- Octavia v2 ------------------------------------------------------------------

class LBResource(Resource):
    admin_state_up: Bool = True
    provisioning_status: str = "ACTIVE"
    operating_status: str = "ONLINE"
    SERVER_OWNED: ClassVar[set[str]] = Resource.SERVER_OWNED | {"provisioning_status", "operating_status"}


class LoadBalancer(LBResource):
    # the VIP: on a subnet, on a network (its first IPv4 subnet) or on an existing port (dfxdp/nb/octavia.py)
    vip_subnet_id: Optional[str] = None
    vip_address: Optional[str] = None
    vip_port_id: Optional[str] = None
    vip_network_id: Optional[str] = None
    provider: str = "dfxdp"
    listeners: list[dict[str, str]] = []
    pools: list[dict[str, str]] = []
    SERVER_OWNED: ClassVar[set[str]] = LBResource.SERVER_OWNED | {"listeners", "pools"}
    IMMUTABLE: ClassVar[set[str]] = {"vip_subnet_id", "vip_address", "vip_port_id", "vip_network_id"}


class Listener(LBResource):
    loadbalancer_id: str
    protocol: Literal["TCP", "UDP", "HTTP", "HTTPS", "TERMINATED_HTTPS", "SCTP"]
    protocol_port: int = Field(ge=1, le=65535)
    default_pool_id: Optional[str] = None
    connection_limit: int = -1
    IMMUTABLE: ClassVar[set[str]] = {"loadbalancer_id", "protocol", "protocol_port"}


class Pool(LBResource):
    loadbalancer_id: Optional[str] = None
    listener_id: Optional[str] = None
    protocol: Literal["TCP", "UDP", "HTTP", "HTTPS", "PROXY", "SCTP"]
    lb_algorithm: Literal["ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT"]
    members: list[dict[str, str]] = []
    healthmonitor_id: Optional[str] = None
    session_persistence: Optional[dict] = None
    SERVER_OWNED: ClassVar[set[str]] = LBResource.SERVER_OWNED | {"members", "healthmonitor_id"}
    IMMUTABLE: ClassVar[set[str]] = {"loadbalancer_id", "listener_id", "protocol"}


class Member(LBResource):
    pool_id: str = ""
    address: IP
    protocol_port: int = Field(ge=1, le=65535)
    subnet_id: Optional[str] = None
    weight: int = Field(1, ge=0, le=256)
    IMMUTABLE: ClassVar[set[str]] = {"pool_id", "address", "protocol_port", "subnet_id"}



class HealthMonitor(LBResource):
    pool_id: str
    type: Literal["PING", "TCP", "HTTP", "HTTPS", "UDP-CONNECT"]
    delay: int = Field(ge=1)
    timeout: int = Field(ge=1)
    max_retries: int = Field(ge=1, le=10)
    max_retries_down: int = Field(3, ge=1, le=10)
    http_method: str = "GET"
    url_path: str = "/"
    expected_codes: str = "200"
    IMMUTABLE: ClassVar[set[str]] = {"pool_id", "type"}


class Chassis(Resource):
    """A node running `dfxdp agent`; the API shows it as a Neutron agent (dfxdp/api/agents.py)."""

    tunnel_ip: IP
    heartbeat: float = 0.0
    # network id -> IPv4 multicast groups with a member on this chassis (the agent's IGMP snooping)
    igmp_groups: dict[str, list[IP]] = {}
    admin_state_up: Bool = True  # an operator's mark (PUT /v2.0/agents): recorded, nothing is scheduled
    bridge_mappings: dict[str, str] = {}  # physical network -> NIC (`dfxdp agent --bridge-mappings`)
    # default SNAT (controller/apps/snat.py): the physical networks it can SNAT to (its fallback runs,
    # their NIC is mapped), and the routers it SNATs for now
    snat_physnets: list[str] = []
    snat_routers: list[str] = []

