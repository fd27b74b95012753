"""IP protocol names of security group rules, as Neutron (neutron_lib.constants) knows them.

One table for the API (which names a rule may carry) and the agents (which number a name
means): a name the datapath did not know would otherwise compile to "any protocol".
"""
from __future__ import annotations

IP_PROTOCOLS = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ipip": 4,
    "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43,
    "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
ALIASES = {"icmpv6": "ipv6-icmp"}  # Neutron's legacy name, still accepted
# protocols whose rules may carry a port range (Neutron's SG_PORT_PROTO_NAMES)
PORTED = ("tcp", "udp", "dccp", "sctp", "udplite")
ICMP = (1, 58)
# names only an IPv6 rule may carry (Neutron's _validate_ethertype_and_protocol)
IPV6_ONLY = ("ipv6-encap", "ipv6-frag", "ipv6-icmp", "icmpv6", "ipv6-nonxt", "ipv6-opts", "ipv6-route")


def number(protocol: str | None) -> int | None:
    """A rule's protocol (a name, an alias or a number as a string) as its IP protocol number;
    None for any protocol."""
    if protocol is None:
        return None
    if protocol.isdigit():
        return int(protocol)
    return IP_PROTOCOLS[ALIASES.get(protocol, protocol)]
