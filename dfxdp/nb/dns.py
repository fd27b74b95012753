"""Neutron's DNS integration: name checks, `dns_assignment`, one name per address in a network.

Neutron's rules (neutron-lib's DNS validators, the dns_integration extension):
a `dns_name` is a PQDN (completed with the domain) or an FQDN ending in the
domain; labels are RFC 1123 (1-63 letters, digits or hyphens, no hyphen at an
end), the whole name at most 255 characters; a port without a name is known as
`host-<address with dashes>`. The domain is the network's `dns_domain`, else the
server-wide default (`[dns] domain` in the server config, `openstacklocal.`).

One deliberate difference: Neutron ignores `dns_name` while the server domain
is its default `openstacklocal.`; here a name is always honoured, so VMs can
resolve each other by name out of the box (docs/dns.md).
"""
from __future__ import annotations

import re

from .errors import BadRequest, Conflict
from .txn import ALLOC, Txn

DEFAULT_DOMAIN = "openstacklocal."
FQDN_MAX = 255  # neutron-lib's FQDN_FIELD_SIZE
_LABEL = re.compile(r"^[A-Za-z0-9-]{1,63}$")
_ALL_DIGITS = re.compile(r"^[0-9]+$")


def _format_problem(name: str) -> str | None:
    """Why `name` is not a valid PQDN or FQDN (RFC 1123 labels), or None."""
    trimmed = name[:-1] if name.endswith(".") else name
    if len(trimmed) > FQDN_MAX:
        return f"'{trimmed}' exceeds the {FQDN_MAX} character FQDN limit"
    labels = trimmed.split(".")
    for label in labels:
        if not label:
            return "Encountered an empty component"
        if label.startswith("-") or label.endswith("-"):
            return f"Name '{label}' must not start or end with a hyphen"
        if not _LABEL.match(label):
            return f"Name '{label}' must be 1-63 characters long, each of which can only be alphanumeric or a hyphen"
    if len(labels) > 1 and _ALL_DIGITS.match(labels[-1]):
        return f"TLD '{labels[-1]}' must not be all numeric"
    return None


def _invalid(attribute: str, reason: str) -> BadRequest:
    # the message of Neutron's API layer for an attribute its validator refused
    return BadRequest("HTTPBadRequest", f"Invalid input for {attribute}. Reason: {reason}.")


def check_domain(domain: str) -> None:
    """A network's `dns_domain`: empty (use the server's) or an FQDN with room for a host label."""
    if not domain:
        return
    if not domain.endswith("."):
        raise _invalid("dns_domain", f"'{domain}' is not a FQDN")
    problem = _format_problem(domain)
    if problem:
        raise _invalid("dns_domain", f"'{domain}' not a valid PQDN or FQDN. Reason: {problem}")
    if len(domain) > FQDN_MAX - 2:
        raise _invalid("dns_domain", f"'{domain}' contains {len(domain)} characters. Adding a sub-domain will "
                                     f"cause it to exceed the maximum length of a FQDN of '{FQDN_MAX}'")


def check_name(name: str, domain: str) -> None:
    """A port's `dns_name` under the network's effective `domain`."""
    if not name:
        return
    problem = _format_problem(name)
    if problem:
        raise _invalid("dns_name", f"'{name}' not a valid PQDN or FQDN. Reason: {problem}")
    if not name.endswith("."):
        if len(name) + len(domain) + 1 > FQDN_MAX:
            raise _invalid("dns_name", f"The dns_name passed is a PQDN and its size is '{len(name)}'. The "
                                       f"dns_domain is set to {domain}, with a length of '{len(domain) + 1}'. When "
                                       f"the two are concatenated to form a FQDN (with a '.' at the end), the "
                                       f"resulting length exceeds the maximum size of '{FQDN_MAX}'")
        return
    suffix = "." + domain.lower()
    if len(name) <= len(suffix) or not name.lower().endswith(suffix):
        raise _invalid("dns_name", f"The dns_name passed is a FQDN. Its higher level labels must be equal to the "
                                   f"dns_domain, that has been set to '{domain}'. It must also include one or more "
                                   f"valid DNS labels to the left of '{domain}'")


def effective_domain(network: dict, server_domain: str) -> str:
    return network.get("dns_domain") or server_domain


def assignment(port: dict, domain: str) -> list[dict]:
    """Neutron's `dns_assignment`: one {hostname, ip_address, fqdn} per fixed IP."""
    name = port.get("dns_name") or ""
    result = []
    for fixed in port.get("fixed_ips", []):
        address = fixed["ip_address"]
        hostname = name or "host-" + address.replace(".", "-").replace(":", "-")
        fqdn = hostname if hostname.endswith(".") else f"{hostname}.{domain}" if domain else hostname
        result.append({"hostname": hostname, "ip_address": address, "fqdn": fqdn})
    return result


def name_key(network_id: str, fqdn: str) -> str:
    return f"{ALLOC}dns/{network_id}/{fqdn.lower()}"


def claim_names(txn: Txn, port: dict, previous: list[dict]) -> None:
    """Hold the port's fqdns in its network, as MACs and IPs are held: a reservation key per
    name, so no two ports of a network answer one name (compared without case), at the
    cost of a key per name instead of reading every port of the network."""
    before = {a["fqdn"].lower() for a in previous}
    after = {a["fqdn"].lower() for a in port["dns_assignment"]}
    for fqdn in sorted(after - before):
        key = name_key(port["network_id"], fqdn)
        if not txn.reserve_unread_first(key, port["id"]):
            holder = (txn.get_raw(key) or b"").decode()
            raise Conflict("DuplicateRecordSet", f"Name {fqdn} is duplicated in network {port['network_id']}: "
                                                 f"port {holder} has it")
    for fqdn in before - after:
        txn.release(name_key(port["network_id"], fqdn))


def release_names(txn: Txn, port: dict) -> None:
    for a in port.get("dns_assignment") or []:
        txn.release(name_key(port["network_id"], a["fqdn"]))
