"""Networks and subnets: provider segments, DNS domains, subnet pools and gateways, and
what goes with a network (its DHCP port, unused floating IPs, its subnets)."""
from __future__ import annotations

import ipaddress
import json

from .. import dns, ipam, segments, validate
from ..errors import Conflict
from ..index import FLOATINGIP_OWNER
from ..mirror import ShownFrom
from ..txn import Txn, now, obj_key
from . import subnetpools
from .base import Family, Hooks, children
from .ports import DHCP_OWNER, ROUTER_INTERFACE_OWNERS_SNAT


class Networks(Family):
    def hooks(self) -> dict[str, Hooks]:
        return {"network": Hooks(self._create_network, self._update_network, self._delete_network,
                                 self._show_subnets,
                                 (children("subnet", "network", lambda s: (s["ip_version"], s.get("subnetpool_id"))),
                                  ShownFrom("subnetpool", field=None, reads=lambda p: p.get("address_scope_id")))),
                "subnet": Hooks(self._create_subnet, self._update_subnet, self._delete_subnet)}

    def _create_network(self, txn: Txn, net: dict) -> None:
        key = segments.fill(net)
        if key and not txn.reserve(key, net["id"]):
            raise segments.in_use(net)
        dns.check_domain(net["dns_domain"])

    def _update_network(self, txn: Txn, old: dict, new: dict) -> None:
        dns.check_domain(new["dns_domain"])
        if new["dns_domain"] != old["dns_domain"]:  # every name in the network moves to the new domain
            for port in txn.children("port", "network", new["id"]):
                self.nb.ports.assign_dns(txn, port, new, port.get("dns_assignment") or [])
                port.update(revision_number=port["revision_number"] + 1, updated_at=now())
                txn.put("port", port)

    def _delete_network(self, txn: Txn, net: dict) -> None:
        # As in Neutron, its DHCP port goes with it, and so do an external network's floating IPs
        # that no port uses.
        ports = self.nb.ports
        for port in txn.children("port", "network", net["id"]):
            if port["device_owner"] == DHCP_OWNER:
                ports.remove_owned(txn, port)
                continue
            fip = txn.get("floatingip", port["device_id"]) if port["device_owner"] == FLOATINGIP_OWNER else None
            if fip and not fip.get("port_id"):
                ports.remove_owned(txn, port)
                txn.delete("floatingip", fip["id"])
        if txn.children("port", "network", net["id"]):
            raise Conflict("NetworkInUse", f"Unable to complete operation on network {net['id']}. "
                                           f"There are one or more ports still in use on the network.")
        for subnet in txn.children("subnet", "network", net["id"]):
            txn.delete("subnet", subnet["id"])
        if net.get("provider:physical_network"):
            key = segments.segment_key(net["provider:physical_network"], net["provider:segmentation_id"])
            if txn.get_raw(key) == net["id"].encode():
                txn.release(key)

    def _show_subnets(self, docs: list[dict]) -> None:
        """A network's subnets (read by network for a few networks: dfxdp/nb/txn.py children_of),
        and (address-scope) the scope of their pool per IP version: the subnets of one IP version
        on a network come from one pool or none."""
        found = Txn(self.nb.store).children_of("subnet", "network", [doc["id"] for doc in docs])
        pool_ids = sorted({s["subnetpool_id"] for subnets in found.values() for s in subnets if s.get("subnetpool_id")})
        pools = {kv.key.rsplit("/", 1)[1]: json.loads(kv.value)
                 for kv in self.nb.store.get_many([obj_key("subnetpool", pool_id) for pool_id in pool_ids]) if kv}
        for doc in docs:
            subnets = found[doc["id"]]
            scopes = {s["ip_version"]: pools[s["subnetpool_id"]].get("address_scope_id")
                      for s in subnets if s.get("subnetpool_id") in pools}
            doc["subnets"] = [subnet["id"] for subnet in subnets]
            doc["ipv4_address_scope"] = scopes.get(4)
            doc["ipv6_address_scope"] = scopes.get(6)

    def _create_subnet(self, txn: Txn, subnet: dict) -> None:
        txn.require("network", subnet["network_id"])
        subnetpools.allocate(txn, subnet, txn.children("subnet", "network", subnet["network_id"]))
        validate.check_subnet_fields(subnet)
        validate.check_ipv6_modes(subnet)
        net = ipaddress.ip_network(subnet["cidr"])
        if subnet["gateway_ip"] == "":
            subnet["gateway_ip"] = ipam.default_gateway(subnet["cidr"]) if net.num_addresses > 2 else None
        if not subnet["allocation_pools"]:
            subnet["allocation_pools"] = ipam.default_pools(subnet["cidr"], subnet["gateway_ip"])
        validate.check_gateway(subnet, None, lambda address: None)
        ipam.check_subnet(subnet, txn.children("subnet", "network", subnet["network_id"]))
        txn.put("subnet", subnet)  # visible to the DHCP port's address allocation below
        if ipam.is_auto_address(subnet):  # as Neutron: every port there gets its address at once
            for port in txn.children("port", "network", subnet["network_id"]):
                self.nb.ports.add_auto_address(txn, port, subnet)
        self.nb.ports.sync_dhcp_port(txn, subnet["network_id"], subnet["project_id"])

    def _update_subnet(self, txn: Txn, old: dict, new: dict) -> None:
        for create_only in ("prefixlen", "use_default_subnetpool"):  # requests of subnet_allocation
            new.pop(create_only, None)
        if new["gateway_ip"] == "":
            new["gateway_ip"] = old["gateway_ip"]
        validate.check_ipv6_dhcp_update(old, new)
        validate.check_gateway(new, old, lambda address: (txn.get_raw(ipam.ip_key(new["id"], address))
                                                          or b"").decode())
        ipam.check_subnet(new, txn.children("subnet", "network", new["network_id"]))
        txn.put("subnet", new)
        self.nb.ports.sync_dhcp_port(txn, new["network_id"], new["project_id"])

    def _delete_subnet(self, txn: Txn, subnet: dict) -> None:
        # As Neutron: the automatic (EUI-64) addresses of an auto-address subnet go with it (the
        # DHCP port's too, before it is synced: it must not be given one again); only a router
        # interface keeps it. Any other subnet is kept by any address but the DHCP port's.
        if ipam.is_auto_address(subnet):
            holders = txn.children("port", "subnet", subnet["id"])
            if not any(p["device_owner"] in ROUTER_INTERFACE_OWNERS_SNAT for p in holders):
                for port in holders:
                    self.nb.ports.drop_subnet(txn, port, subnet["id"])
        self.nb.ports.sync_dhcp_port(txn, subnet["network_id"], subnet["project_id"], leaving=subnet["id"])
        if txn.children("port", "subnet", subnet["id"]):
            raise Conflict("SubnetInUse", f"Unable to complete operation on subnet {subnet['id']}: "
                                          f"one or more ports have an IP allocation from this subnet.")
