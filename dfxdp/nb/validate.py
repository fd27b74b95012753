"""Neutron's checks that a field's type alone does not express.

Each function mirrors one of neutron-lib's validators or one of Neutron's plugin
checks, and refuses with Neutron's error type: a client that handles Neutron's
answers handles ours. Attribute checks (run inside the pydantic models) raise
ValueError, which the service answers as HTTPBadRequest "Invalid input for …", as
Neutron's validators do; its converters (booleans) and the checks that look at a
whole object or at other objects raise the NBError Neutron raises.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Callable

from .errors import BadRequest, Conflict

NAME_MAX_LEN = 255         # neutron-lib db constants: NAME_FIELD_SIZE, DESCRIPTION_FIELD_SIZE, …
MAX_DNS_NAMESERVERS = 5    # Neutron's max_dns_nameservers default
MAX_HOST_ROUTES = 20       # Neutron's max_subnet_host_routes default
MAX_ADDRESS_PAIRS = 10     # Neutron's max_allowed_address_pair default
INVALID_MACS = {"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"}  # neutron-lib constants.INVALID_MAC_ADDRESSES
# the IPv6 modes in which every port gets its EUI-64 address (Neutron's is_auto_address_subnet)
AUTO_ADDRESS_MODES = {"slaac", "dhcpv6-stateless"}
_MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def boolean(value):
    """neutron-lib convert_to_boolean: a bool, 0 or 1, or "true"/"false"/"1"/"0" in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    # Neutron's converters run before its validators and raise InvalidInput themselves
    raise BadRequest("InvalidInput", f"Invalid input for operation: '{value}' cannot be converted to boolean.")


def mac(value: str) -> str:
    """neutron-lib validate_mac_address: six colon-separated octets, not all-zero or broadcast."""
    if not _MAC.match(value) or value.lower() in INVALID_MACS:
        raise ValueError(f"'{value}' is not a valid MAC address")
    return value.lower()


def ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"'{value}' is not a valid IP address") from None


def subnet_cidr(value: str) -> str:
    """neutron-lib validate_subnet: a prefix length is required and an IPv4 CIDR must not
    have host bits set ('10.7.0.5/24' is refused); an IPv6 one is normalized, as Neutron does."""
    try:
        if "/" not in value:
            raise ValueError
        net = ipaddress.ip_network(value, strict=False)
        if net.version == 4 and str(net) != value:
            raise ValueError
    except ValueError:
        raise ValueError(f"'{value}' is not a valid IP subnet") from None
    return str(net)


def prefix(value: str) -> str:
    """A remote prefix (security group rules): Neutron's convert_ip_prefix_to_cidr keeps
    the network of a prefix with host bits, and a bare address is a host prefix."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"'{value}' is not a valid IP prefix") from None


def ip_or_subnet(value: str) -> str:
    """An allowed address pair's ip_address: an address or a CIDR (validate_subnet's rules)."""
    return subnet_cidr(value) if "/" in value else ip(value)


def _version_of(value: str) -> int:
    return ipaddress.ip_network(value, strict=False).version


def check_subnet_fields(subnet: dict) -> None:
    """Neutron's _validate_subnet on the subnet's own fields: every address of the IP version
    of the subnet (a mismatch is refused, never compared), no /0, Neutron's count limits."""
    version = subnet["ip_version"]
    net = ipaddress.ip_network(subnet["cidr"])
    if net.version != version:
        raise BadRequest("InvalidInput", f"Invalid input for operation: cidr {net} is not an IPv{version} network.")
    if net.prefixlen == 0:
        raise BadRequest("InvalidInput", "Invalid input for operation: 0 is not allowed as CIDR prefix length.")
    gateway = subnet.get("gateway_ip")
    if gateway and _version_of(gateway) != version:
        raise BadRequest("InvalidInput", f"Invalid input for operation: {gateway} is not a valid IPv{version} "
                                         f"address for gateway_ip.")
    for pool in subnet["allocation_pools"]:
        if {_version_of(pool["start"]), _version_of(pool["end"])} != {version}:
            raise BadRequest("InvalidAllocationPool",
                             f"The allocation pool {pool['start']}-{pool['end']} is not valid.")
    if len(subnet["dns_nameservers"]) > MAX_DNS_NAMESERVERS:
        raise BadRequest("DNSNameServersExhausted", f"Unable to complete operation for {subnet.get('id') or 'subnet'}. "
                                                    f"The number of DNS nameservers exceeds the limit "
                                                    f"{MAX_DNS_NAMESERVERS}.")
    for server in subnet["dns_nameservers"]:
        if _version_of(server) != version:
            raise BadRequest("InvalidInput", f"Invalid input for operation: {server} is not a valid IPv{version} "
                                             f"address for dns_nameserver.")
    if len(subnet["host_routes"]) > MAX_HOST_ROUTES:
        raise BadRequest("HostRoutesExhausted", f"Unable to complete operation for {subnet.get('id') or 'subnet'}. "
                                                f"The number of host routes exceeds the limit {MAX_HOST_ROUTES}.")
    for route in subnet["host_routes"]:
        if {_version_of(route["destination"]), _version_of(route["nexthop"])} != {version}:
            raise BadRequest("InvalidInput", f"Invalid input for operation: host route "
                                             f"{route['destination']} via {route['nexthop']} is not IPv{version}.")


def check_ipv6_modes(subnet: dict) -> None:
    """Neutron's _validate_subnet and _validate_ipv6_attributes on a new subnet: the IPv6
    modes only on IPv6 subnets with DHCP enabled, equal when both are set, and a /64 for the
    automatic (EUI-64) address modes."""
    ra_mode, address_mode = subnet.get("ipv6_ra_mode"), subnet.get("ipv6_address_mode")
    if subnet["ip_version"] == 4:
        for name in ("ipv6_ra_mode", "ipv6_address_mode"):
            if subnet.get(name):
                raise BadRequest("InvalidInput", f"Invalid input for operation: {name} is not valid when "
                                                 f"ip_version is 4.")
        return
    if (ra_mode or address_mode) and not subnet["enable_dhcp"]:
        raise BadRequest("InvalidInput", "Invalid input for operation: ipv6_ra_mode or ipv6_address_mode cannot "
                                         "be set when enable_dhcp is set to False.")
    if ra_mode and address_mode and ra_mode != address_mode:
        raise BadRequest("InvalidInput", f"Invalid input for operation: ipv6_ra_mode set to '{ra_mode}' with "
                                         f"ipv6_address_mode set to '{address_mode}' is not valid. If both "
                                         f"attributes are set, they must be the same value.")
    if AUTO_ADDRESS_MODES & {ra_mode, address_mode} and ipaddress.ip_network(subnet["cidr"]).prefixlen != 64:
        raise BadRequest("InvalidInput", f"Invalid input for operation: Invalid CIDR {subnet['cidr']} for IPv6 "
                                         f"address mode. OpenStack uses the EUI-64 address format, which requires "
                                         f"the prefix to be /64.")


def check_ipv6_dhcp_update(old: dict, new: dict) -> None:
    """Neutron's _validate_ipv6_update_dhcp: DHCP stays on for a subnet with IPv6 modes (the
    modes themselves cannot change: model.Subnet.IMMUTABLE)."""
    if not new["enable_dhcp"] and (old.get("ipv6_ra_mode") or old.get("ipv6_address_mode")):
        raise BadRequest("InvalidInput", "Invalid input for operation: Cannot disable enable_dhcp with ipv6 "
                                         "attributes set.")


def check_address_pairs(pairs: list[dict]) -> None:
    """neutron-lib _validate_allowed_address_pairs: at most MAX_ADDRESS_PAIRS, no duplicate."""
    if len(pairs) > MAX_ADDRESS_PAIRS:
        raise BadRequest("AllowedAddressPairExhausted",
                         f"The number of allowed address pair exceeds the maximum {MAX_ADDRESS_PAIRS}.")
    seen = set()
    for pair in pairs:
        key = (pair.get("mac_address"), pair["ip_address"])
        if key in seen:
            raise BadRequest("DuplicateAddressPairInRequest",
                             f"Request contains duplicate address pair: mac_address {key[0]} ip_address {key[1]}.")
        seen.add(key)


def fill_pair_macs(port: dict) -> None:
    """An address pair without a MAC holds the port's MAC (Neutron stores it so)."""
    for pair in port["allowed_address_pairs"]:
        pair["mac_address"] = pair.get("mac_address") or port["mac_address"]


def check_fixed_ip(subnet: dict, address: str, device_owner: str) -> None:
    """neutron ipam check_subnet_ip: in the subnet, and in an IPv4 subnet larger than /31 neither
    its network nor its broadcast address; in IPv6 the network (subnet-router anycast) address
    belongs to router ports only."""
    addr, net = ipaddress.ip_address(address), ipaddress.ip_network(subnet["cidr"])
    if net.version == 6:
        usable = addr in net and (addr != net.network_address or device_owner.startswith("network:router"))
    elif net.prefixlen < 31:
        usable = addr in net and addr not in (net.network_address, net.broadcast_address)
    else:
        usable = addr in net
    if not usable:
        raise BadRequest("InvalidIpForSubnet", f"IP address {address} is not a valid IP for the specified subnet.")


def check_gateway(subnet: dict, old: dict | None, holder_of: Callable[[str], str | None]) -> None:
    """The gateway outside the allocation pools (GatewayConflictWithAllocationPools); and a gateway
    that moves neither leaves an address a port holds (a router interface on the old gateway) nor
    lands on one (GatewayIpInUse). holder_of(address) is the id of whoever holds an address of the
    subnet, or None."""
    gateway = subnet.get("gateway_ip")
    if gateway:
        gw = ipaddress.ip_address(gateway)
        for pool in subnet["allocation_pools"]:
            if ipaddress.ip_address(pool["start"]) <= gw <= ipaddress.ip_address(pool["end"]):
                raise Conflict("GatewayConflictWithAllocationPools", f"Gateway ip {gateway} conflicts with "
                                                                     f"allocation pool {pool['start']}-{pool['end']}.")
    if old is None or gateway == old.get("gateway_ip"):
        return
    for address in (old.get("gateway_ip"), gateway):
        holder = holder_of(address) if address else None
        if holder:
            raise Conflict("GatewayIpInUse", f"Gateway ip {address} already in use by port {holder}. "
                                             f"Unable to update.")
