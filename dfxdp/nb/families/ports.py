"""Ports: MAC and fixed-IP reservations, port security and its default group, DNS names,
binding as Neutron shows it, the network's DHCP port, and ports other objects own."""
from __future__ import annotations

import ipaddress
import random

from .. import dns, ipam, validate
from ..errors import BadRequest, Conflict
from ..index import DHCP_OWNER, FLOATINGIP_OWNER, ROUTER_GATEWAY, ROUTER_INTERFACE
from ..mirror import ShownFrom
from ..txn import ALLOC, Txn, now, obj_key, run_txn
from .base import Family, Hooks, exists

DHCP_DEVICE_ID = "reserved_dhcp_port"  # Neutron's id for a DHCP port no agent has taken
LB_VIP_OWNER = "Octavia"
PORT_STATUSES = {"ACTIVE", "DOWN", "BUILD", "ERROR"}
# neutron-lib's router interface owners: they may hold any address of an auto-address subnet
# (the gateway); with the SNAT port, the owners that get no automatic (EUI-64) address
ROUTER_INTERFACE_OWNERS = (ROUTER_INTERFACE, "network:ha_router_replicated_interface",
                           "network:router_interface_distributed")
ROUTER_INTERFACE_OWNERS_SNAT = ROUTER_INTERFACE_OWNERS + ("network:router_centralized_snat",)


def mac_key(network_id: str, mac: str) -> str:
    return f"{ALLOC}mac/{network_id}/{mac.lower()}"


class Ports(Family):
    def hooks(self) -> dict[str, Hooks]:
        # a port's binding shows whether its host's chassis exists (not its heartbeats)
        return {"port": Hooks(self.create, self.update, self._delete, self._show_binding,
                              (ShownFrom("chassis", lambda chassis: [chassis["id"]], "binding:host_id", exists),))}

    def create(self, txn: Txn, port: dict) -> None:
        """A new port's reservations and defaults (also for ports other objects create)."""
        net = txn.require("network", port["network_id"])
        self._reserve_mac(txn, port)
        port["fixed_ips"] = self._assign_fixed_ips(txn, port, port["fixed_ips"], [])
        self._check_port_security(txn, port, net)
        self.assign_dns(txn, port, net, [])

    def update(self, txn: Txn, old: dict, new: dict) -> None:
        net = txn.require("network", new["network_id"])
        self.nb.security_groups.default_group(txn, old["project_id"])
        requested = new["fixed_ips"]
        if new["mac_address"].lower() != old["mac_address"]:
            txn.release(mac_key(old["network_id"], old["mac_address"]))
            self._reserve_mac(txn, new)
            # as Neutron: an EUI-64 address follows the MAC (assigned again below)
            subnets = {s["id"]: s for s in self.subnets_of(txn, new["network_id"])}
            requested = [f for f in requested if not _is_eui64_of(subnets.get(f["subnet_id"]), f, old["mac_address"])]
        if requested != old["fixed_ips"]:
            new_ips = self._assign_fixed_ips(txn, new, requested, old["fixed_ips"])
            for fixed in old["fixed_ips"]:
                if fixed not in new_ips:
                    ipam.release(txn, fixed["subnet_id"], fixed["ip_address"])
            new["fixed_ips"] = new_ips
        self._check_port_security(txn, new, net)
        self.assign_dns(txn, new, net, old.get("dns_assignment") or [])

    def _delete(self, txn: Txn, port: dict, by_owner: bool = False) -> None:
        if port["device_owner"] in (ROUTER_INTERFACE, ROUTER_GATEWAY, FLOATINGIP_OWNER) and not by_owner:
            raise Conflict("PortInUse", f"Port {port['id']} is owned by {port['device_owner']} "
                                        f"{port['device_id']}: remove it through its owner")
        txn.release(mac_key(port["network_id"], port["mac_address"]))
        for fixed in port["fixed_ips"]:
            ipam.release(txn, fixed["subnet_id"], fixed["ip_address"])
        dns.release_names(txn, port)
        for fip in txn.children("floatingip", "port", port["id"]):
            fip.update(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN",
                       revision_number=fip["revision_number"] + 1, updated_at=now())
            txn.put("floatingip", fip)

    def remove_owned(self, txn: Txn, port: dict) -> None:
        """Delete a port its owner (a router, a floating IP, a network …) is done with."""
        self._delete(txn, port, by_owner=True)
        txn.delete("port", port["id"])

    def _show_binding(self, docs: list[dict]) -> None:
        hosts = sorted({doc.get("binding:host_id") for doc in docs} - {None, ""})  # a chassis' id is its name
        chassis = {host for host, kv in zip(hosts, self.nb.store.get_many([obj_key("chassis", h) for h in hosts]))
                   if kv}
        for doc in docs:
            doc.update(_binding(doc, chassis))

    def set_status(self, port_id: str, status: str) -> dict:
        if status not in PORT_STATUSES:
            raise BadRequest("InvalidInput", f"port status {status!r} is not one of {sorted(PORT_STATUSES)}")

        def body_fn(txn: Txn) -> dict:
            port = txn.require("port", port_id)
            if port["status"] != status:
                port.update(status=status, revision_number=port["revision_number"] + 1, updated_at=now())
                txn.put("port", port)
            return port

        return run_txn(self.nb.store, body_fn)

    # ------------------------------------------------------------------ addresses
    @staticmethod
    def subnets_of(txn: Txn, network_id: str) -> list[dict]:
        """The network's subnets, in order; read once per transaction while it writes no
        subnet (each port of a bulk asks). Read-only: shared by those calls."""
        memo, version = ("subnets-of", network_id), txn.writes_of("subnet")
        found = txn.memo.get(memo)
        if found is None or found[0] != version:
            found = txn.memo[memo] = (version, sorted(txn.children("subnet", "network", network_id),
                                                      key=lambda s: (s["ip_version"], s["created_at"], s["id"])))
        return list(found[1])

    def _assign_fixed_ips(self, txn: Txn, port: dict, requested: list[dict] | None, keep: list[dict]) -> list[dict]:
        """Reserve requested fixed IPs (or one per IP version by default), then, as Neutron, the
        port's EUI-64 address on every auto-address subnet of the network (router interfaces get
        none); `keep` are already held."""
        subnets = {s["id"]: s for s in self.subnets_of(txn, port["network_id"])}
        held = {(f["subnet_id"], f["ip_address"]) for f in keep}
        automatic = port["device_owner"] not in ROUTER_INTERFACE_OWNERS_SNAT
        result = []
        if requested is None:  # left out: Neutron's default of one address per IP version
            for version in (4, 6):
                candidates = [s for s in subnets.values() if s["ip_version"] == version and not ipam.is_auto_address(s)]
                if candidates:
                    result.append(_allocate_any(txn, candidates, port["id"]))
            requested = []
        for fixed in requested:
            subnet_id, address = fixed.get("subnet_id"), fixed.get("ip_address")
            if subnet_id is None and address:
                matches = [s for s in subnets.values() if ipam.in_subnet(s, address)]
                if not matches:
                    raise BadRequest("InvalidIpForNetwork",
                                     f"IP address {address} is not in any subnet of network {port['network_id']}")
                subnet_id = matches[0]["id"]
            subnet = subnets.get(subnet_id)
            if subnet is None:
                raise BadRequest("InvalidInput", f"subnet {subnet_id} is not a subnet of network {port['network_id']}")
            auto = ipam.is_auto_address(subnet)
            if address and (subnet_id, address) in held:
                result.append({"subnet_id": subnet_id, "ip_address": address})
            elif address:
                if auto and port["device_owner"] not in ROUTER_INTERFACE_OWNERS and \
                        ipaddress.ip_address(address) != ipaddress.ip_address(ipam.eui64(subnet["cidr"],
                                                                                         port["mac_address"])):
                    raise BadRequest("AllocationOnAutoAddressSubnet",
                                     f"IPv6 address {address} cannot be directly assigned to a port on subnet "
                                     f"{subnet_id} as the subnet is configured for automatic addresses")
                validate.check_fixed_ip(subnet, address, port["device_owner"])
                ipam.reserve(txn, subnet, address, port["id"])
                result.append({"subnet_id": subnet_id, "ip_address": address})
            elif auto and automatic:
                continue  # its EUI-64 address, below
            else:
                # the DHCP port takes the lowest free address, never one picked at random: clients
                # that ask for a given address (Tempest asks for .9/.10, ::f/::10) must not find
                # it taken by a port they did not create
                address = ipam.allocate(txn, subnet, port["id"], lowest=port["device_owner"] == DHCP_OWNER)
                result.append({"subnet_id": subnet_id, "ip_address": address})
        for subnet in subnets.values() if automatic else ():
            if ipam.is_auto_address(subnet) and all(f["subnet_id"] != subnet["id"] for f in result):
                result.append(self._eui64_address(txn, port, subnet, held))
        return result

    @staticmethod
    def _eui64_address(txn: Txn, port: dict, subnet: dict, held: set[tuple[str, str]]) -> dict:
        address = ipam.eui64(subnet["cidr"], port["mac_address"])
        if (subnet["id"], address) not in held:
            ipam.reserve(txn, subnet, address, port["id"])
        return {"subnet_id": subnet["id"], "ip_address": address}

    def add_auto_address(self, txn: Txn, port: dict, subnet: dict) -> None:
        """A new auto-address subnet: the port's EUI-64 address on it (Neutron's
        add_auto_addrs_on_network_ports), unless it is a router interface."""
        if port["device_owner"] in ROUTER_INTERFACE_OWNERS_SNAT:
            return
        self._set_fixed_ips(txn, port, port["fixed_ips"] + [self._eui64_address(txn, port, subnet, set())])

    def drop_subnet(self, txn: Txn, port: dict, subnet_id: str) -> None:
        """An auto-address subnet going away: the port's address there goes with it."""
        for fixed in port["fixed_ips"]:
            if fixed["subnet_id"] == subnet_id:
                ipam.release(txn, subnet_id, fixed["ip_address"])
        self._set_fixed_ips(txn, port, [f for f in port["fixed_ips"] if f["subnet_id"] != subnet_id])

    def _set_fixed_ips(self, txn: Txn, port: dict, fixed_ips: list[dict]) -> None:
        """Store the port with these (already reserved) addresses, and the DNS names they give."""
        net = txn.require("network", port["network_id"])
        new = dict(port, fixed_ips=fixed_ips, revision_number=port["revision_number"] + 1, updated_at=now())
        self.assign_dns(txn, new, net, port.get("dns_assignment") or [])
        txn.put("port", new)

    @staticmethod
    def _reserve_mac(txn: Txn, port: dict) -> None:
        if port["mac_address"]:
            port["mac_address"] = port["mac_address"].lower()
            if not txn.reserve(mac_key(port["network_id"], port["mac_address"]), port["id"]):
                raise Conflict("MacAddressInUse", f"Unable to complete operation for network {port['network_id']}. "
                                                  f"The mac address {port['mac_address']} is in use.")
            return
        # 2^24 random MACs per network: a taken one is rare enough to cost a retry of the
        # whole transaction rather than a read on every create
        while True:
            port["mac_address"] = "fa:16:3e:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))
            if txn.claim(mac_key(port["network_id"], port["mac_address"]), port["id"]):
                return

    def _check_port_security(self, txn: Txn, port: dict, net: dict) -> None:
        if port["port_security_enabled"] is None:
            port["port_security_enabled"] = net["port_security_enabled"]
        owned_by_network = port["device_owner"].startswith("network:") or port["device_owner"] == LB_VIP_OWNER
        if port["security_groups"] is None:  # the default group's reservation guards its existence
            port["security_groups"] = ([self.nb.security_groups.default_group(txn, port["project_id"])]
                                       if port["port_security_enabled"] and not owned_by_network else [])
        else:
            for sg_id in port["security_groups"]:
                txn.require("security_group", sg_id)
        validate.fill_pair_macs(port)
        if not port["port_security_enabled"] and (port["security_groups"] or port["allowed_address_pairs"]):
            raise BadRequest("PortSecurityAndIPRequiredForSecurityGroups",
                             "Port security must be enabled to have security groups or allowed address pairs.")

    def assign_dns(self, txn: Txn, port: dict, net: dict, previous: list[dict]) -> None:
        """Check the port's dns_name under its network's domain, fill its dns_assignment and
        hold its names (`previous`: the assignment it had)."""
        domain = dns.effective_domain(net, self.nb.dns_domain)
        dns.check_name(port["dns_name"], domain)
        port["dns_assignment"] = dns.assignment(port, domain)
        dns.claim_names(txn, port, previous)

    # ------------------------------------------------------------------ the DHCP port
    def sync_dhcp_port(self, txn: Txn, network_id: str, project: str, leaving: str | None = None) -> None:
        """As Neutron: a network's DHCP port (network:dhcp) holds one address on each subnet
        with DHCP enabled; it is the DHCP and DNS server VMs are told about. `leaving`: a
        subnet being deleted."""
        wanted = [s["id"] for s in self.subnets_of(txn, network_id) if s["enable_dhcp"] and s["id"] != leaving]
        port = next(iter(txn.children("port", "network:dhcp", network_id)), None)
        if port is None:
            if wanted:
                self.nb.child(txn, "port", {"network_id": network_id, "device_owner": DHCP_OWNER,
                                            "device_id": DHCP_DEVICE_ID,
                                            "fixed_ips": [{"subnet_id": s} for s in wanted]}, project)
            return
        if not wanted:
            self.remove_owned(txn, port)
            return
        held = {f["subnet_id"] for f in port["fixed_ips"]}
        if held == set(wanted):
            return
        requested = [f for f in port["fixed_ips"] if f["subnet_id"] in wanted] + \
                    [{"subnet_id": s} for s in wanted if s not in held]
        new = dict(port, fixed_ips=requested, revision_number=port["revision_number"] + 1, updated_at=now())
        self.update(txn, port, new)
        txn.put("port", new)


def _is_eui64_of(subnet: dict | None, fixed: dict, mac: str) -> bool:
    """Whether a fixed IP is `mac`'s EUI-64 address on an auto-address subnet."""
    return bool(subnet and ipam.is_auto_address(subnet) and fixed.get("ip_address")
                and ipaddress.ip_address(fixed["ip_address"]) == ipaddress.ip_address(ipam.eui64(subnet["cidr"], mac)))


def _allocate_any(txn: Txn, subnets: list[dict], owner: str) -> dict:
    """An address from the first of `subnets` that has one free."""
    for subnet in subnets[:-1]:
        try:
            return {"subnet_id": subnet["id"], "ip_address": ipam.allocate(txn, subnet, owner)}
        except Conflict:
            continue
    return {"subnet_id": subnets[-1]["id"], "ip_address": ipam.allocate(txn, subnets[-1], owner)}


def _binding(port: dict, chassis: set[str]) -> dict:
    """Neutron's binding:vif_type and vif_details: "unbound" without a host, "tap" on a host
    that runs a dfxdp agent (which plugs the port by its tap name, controller/binding.py),
    "binding_failed" on a host that runs none."""
    host = port.get("binding:host_id")
    if not host:
        vif_type, details = "unbound", {}
    elif host in chassis:
        vif_type, details = "tap", {"port_filter": bool(port.get("port_security_enabled")), "connectivity": "l2"}
    else:
        vif_type, details = "binding_failed", {}
    return {"binding:vnic_type": port.get("binding:vnic_type", "normal"), "binding:vif_type": vif_type,
            "binding:vif_details": details}
