"""A security group rule's own checks, in Neutron's order and with its error types and words
(neutron/db/securitygroups_db.py: _validate_security_group_rule), which clients match on."""
from __future__ import annotations

import ipaddress

from . import protocols
from .errors import BadRequest

PORT_MAX = 65535
ICMP_MAX = 255


def _canonical_protocol(rule: dict) -> None:
    """Neutron's spelling: legacy IPv6 ICMP names, and ICMP's number 1 on an IPv6 rule,
    become ipv6-icmp / 58."""
    proto = rule["protocol"]
    if proto is None:
        return
    if not (proto in protocols.IP_PROTOCOLS or proto in protocols.ALIASES
            or (proto.isdigit() and int(proto) <= ICMP_MAX)):
        names = ", ".join([*protocols.IP_PROTOCOLS, *protocols.ALIASES])
        raise BadRequest("SecurityGroupRuleInvalidProtocol",
                         f"Security group rule protocol {proto} not supported. Only protocol values "
                         f"[None, {names}] and integer representations [0 to 255] are supported.")
    if rule["ethertype"] == "IPv6":
        if proto in protocols.ALIASES:
            rule["protocol"] = protocols.ALIASES[proto]
        elif proto == "1":
            rule["protocol"] = "58"


def _check_ports(rule: dict) -> None:
    lo, hi = rule["port_range_min"], rule["port_range_max"]
    for port in (lo, hi):
        if port is not None and not 0 <= port <= PORT_MAX:
            raise BadRequest("SecurityGroupInvalidPortValue", f"Invalid value for port {port}")
    if lo is None and hi is None:
        return
    if rule["protocol"] is None:
        raise BadRequest("SecurityGroupProtocolRequiredWithPorts",
                         "Must also specify protocol if port range is given.")
    number = protocols.number(rule["protocol"])
    if number in {protocols.IP_PROTOCOLS[p] for p in protocols.PORTED}:
        if lo == 0 or hi == 0:
            raise BadRequest("SecurityGroupInvalidPortValue", "Invalid value for port 0")
        if lo is None or hi is None or lo > hi:
            raise BadRequest("SecurityGroupInvalidPortRange",
                             "For TCP/UDP protocols, port_range_min must be <= port_range_max")
    elif number in protocols.ICMP:
        for value, field, attr in ((lo, "type", "port_range_min"), (hi, "code", "port_range_max")):
            if value is not None and not 0 <= value <= ICMP_MAX:
                raise BadRequest("SecurityGroupInvalidIcmpValue", f"Invalid value for ICMP {field} ({attr}) "
                                                                  f"{value}. It must be 0 to 255.")
        if lo is None:
            raise BadRequest("SecurityGroupMissingIcmpType", f"ICMP code (port-range-max) {hi} is provided but "
                                                             f"ICMP type (port-range-min) is missing.")
    else:
        ported = ", ".join(p.upper() for p in protocols.PORTED)
        raise BadRequest("SecurityGroupInvalidProtocolForPort",
                         f"Invalid protocol {number} for port range, only supported for {ported} protocols.")


def _check_prefix(rule: dict) -> None:
    prefix = rule["remote_ip_prefix"]
    if prefix and f"IPv{ipaddress.ip_network(prefix).version}" != rule["ethertype"]:
        raise BadRequest("SecurityGroupRuleParameterConflict",
                         f"Conflicting value ethertype {rule['ethertype']} for CIDR {prefix}")


def _check_ethertype(rule: dict) -> None:
    proto = rule["protocol"]
    ipv6_only = set(protocols.IPV6_ONLY) | {str(protocols.IP_PROTOCOLS[p]) for p in protocols.IPV6_ONLY
                                            if p in protocols.IP_PROTOCOLS}
    if proto in ipv6_only and rule["ethertype"] == "IPv4":
        raise BadRequest("SecurityGroupEthertypeConflictWithProtocol",
                         f"Invalid ethertype {rule['ethertype']} for protocol {proto}.")


def validate_rule(rule: dict) -> None:
    """Checks (and Neutron's canonical spelling of the protocol) of a rule about to be created."""
    _canonical_protocol(rule)
    _check_ports(rule)
    _check_prefix(rule)
    _check_ethertype(rule)
