"""Routers and floating IPs: gateways, interfaces, static routes, and which router makes
a floating IP's port reachable (Neutron's checks)."""
from __future__ import annotations

import ipaddress

from ..errors import BadRequest, Conflict, NotFound
from ..index import FLOATINGIP_OWNER, ROUTER_GATEWAY, ROUTER_INTERFACE
from ..txn import Txn, now, run_txn
from .base import Family, Hooks


class Routers(Family):
    def hooks(self) -> dict[str, Hooks]:
        return {"router": Hooks(self._create_router, self._update_router, self._delete_router),
                "floatingip": Hooks(self._create_floatingip, self._update_floatingip, self._delete_floatingip)}

    @staticmethod
    def _router_ports(txn: Txn, router_id: str, owner: str) -> list[dict]:
        return [p for p in txn.children("port", "router", router_id) if p["device_owner"] == owner]

    def _ipv6_interface_on(self, txn: Txn, router_id: str, subnet: dict) -> dict | None:
        """The router's interface on the subnet's network holding only IPv6 addresses, if any:
        Neutron gives a network's IPv6 subnets one router port (one link-local address, one RA)."""
        for port in self._router_ports(txn, router_id, ROUTER_INTERFACE):
            if port["network_id"] == subnet["network_id"] and all(
                    ipaddress.ip_address(f["ip_address"]).version == 6 for f in port["fixed_ips"]):
                return port
        return None

    def _set_gateway(self, txn: Txn, router: dict, old_info: dict | None) -> None:
        info = router["external_gateway_info"]
        if old_info and (not info or info["network_id"] != old_info["network_id"]):
            for port in self._router_ports(txn, router["id"], ROUTER_GATEWAY):
                self.nb.ports.remove_owned(txn, port)
            if info is None:
                return
        elif old_info and info:
            info["external_fixed_ips"] = old_info["external_fixed_ips"]
            return
        if not info:
            return
        net = txn.require("network", info["network_id"])
        if not net["router:external"]:
            raise BadRequest("BadRequest", f"Network {net['id']} is not an external network")
        fixed = {"fixed_ips": info["external_fixed_ips"]} if info["external_fixed_ips"] else {}
        port = self.nb.child(txn, "port", {"network_id": net["id"], "device_owner": ROUTER_GATEWAY,
                                           "device_id": router["id"], **fixed}, router["project_id"])
        info["external_fixed_ips"] = port["fixed_ips"]

    def _check_routes(self, txn: Txn, router: dict) -> None:
        cidrs = []
        for port in self._router_ports(txn, router["id"], ROUTER_INTERFACE) + \
                self._router_ports(txn, router["id"], ROUTER_GATEWAY):
            for fixed in port["fixed_ips"]:
                subnet = txn.get("subnet", fixed["subnet_id"])
                if subnet:
                    cidrs.append(ipaddress.ip_network(subnet["cidr"]))
        for route in router["routes"]:
            nexthop = ipaddress.ip_address(route["nexthop"])
            if not any(nexthop in c for c in cidrs):
                raise BadRequest("InvalidRoutes", f"Invalid format for routes: the nexthop {nexthop} of route "
                                                  f"{route['destination']} is not connected with the router")

    def _create_router(self, txn: Txn, router: dict) -> None:
        self._set_gateway(txn, router, None)
        self._check_routes(txn, router)

    def _update_router(self, txn: Txn, old: dict, new: dict) -> None:
        self._set_gateway(txn, new, old["external_gateway_info"])
        self._check_routes(txn, new)

    def _delete_router(self, txn: Txn, router: dict) -> None:
        if self._router_ports(txn, router["id"], ROUTER_INTERFACE):
            raise Conflict("RouterInUse", f"Router {router['id']} still has ports")
        for fip in txn.children("floatingip", "router", router["id"]):
            raise Conflict("RouterInUse", f"Router {router['id']} is used by floating IP {fip['id']}")
        for port in self._router_ports(txn, router["id"], ROUTER_GATEWAY):
            self.nb.ports.remove_owned(txn, port)

    def add_interface(self, router_id: str, body: dict) -> dict:
        if bool(body.get("subnet_id")) == bool(body.get("port_id")):
            raise BadRequest("BadRequest", "Either subnet_id or port_id must be specified (not both)")

        def body_fn(txn: Txn) -> dict:
            router = txn.require("router", router_id)
            attached = {f["subnet_id"] for p in self._router_ports(txn, router_id, ROUTER_INTERFACE)
                        for f in p["fixed_ips"]}
            if body.get("subnet_id"):
                subnet = txn.require("subnet", body["subnet_id"])
                if subnet["id"] in attached:
                    raise BadRequest("BadRequest", f"Router already has a port on subnet {subnet['id']}")
                if not subnet["gateway_ip"]:
                    raise BadRequest("BadRequest", f"Subnet {subnet['id']} has no gateway IP")
                _check_router_subnets(txn, attached, [subnet["id"]])
                gateway = {"subnet_id": subnet["id"], "ip_address": subnet["gateway_ip"]}
                port = self._ipv6_interface_on(txn, router_id, subnet) if subnet["ip_version"] == 6 else None
                if port is not None:  # as Neutron: one more IPv6 prefix on the port the router has there
                    grown = dict(port, fixed_ips=[*port["fixed_ips"], gateway],
                                 revision_number=port["revision_number"] + 1, updated_at=now())
                    self.nb.ports.update(txn, port, grown)
                    txn.put("port", grown)
                    return _interface_info(router, grown, subnet["id"])
                port = self.nb.child(txn, "port", {
                    "network_id": subnet["network_id"], "device_owner": ROUTER_INTERFACE, "device_id": router_id,
                    "fixed_ips": [gateway]}, router["project_id"])
            else:
                port = txn.require("port", body["port_id"])
                if port["device_owner"] or port["device_id"]:
                    raise Conflict("PortInUse", f"Port {port['id']} is in use by {port['device_owner'] or 'a device'}")
                if not port["fixed_ips"]:
                    raise BadRequest("BadRequest", f"Port {port['id']} has no fixed IP")
                if attached & {f["subnet_id"] for f in port["fixed_ips"]}:
                    raise BadRequest("BadRequest", "Router already has a port on that subnet")
                _check_router_subnets(txn, attached, [f["subnet_id"] for f in port["fixed_ips"]])
                port.update(device_owner=ROUTER_INTERFACE, device_id=router_id, security_groups=[],
                            revision_number=port["revision_number"] + 1, updated_at=now())
            # a distributed router's interface is up wherever the router is: on every chassis
            port["status"] = "ACTIVE"
            txn.put("port", port)
            return _interface_info(router, port)

        return run_txn(self.nb.store, body_fn)

    def remove_interface(self, router_id: str, body: dict) -> dict:
        if not body.get("subnet_id") and not body.get("port_id"):
            raise BadRequest("BadRequest", "Either subnet_id or port_id must be specified")

        def body_fn(txn: Txn) -> dict:
            router = txn.require("router", router_id)
            ports = self._router_ports(txn, router_id, ROUTER_INTERFACE)
            if body.get("port_id"):
                ports = [p for p in ports if p["id"] == body["port_id"]]
            if body.get("subnet_id"):
                ports = [p for p in ports if any(f["subnet_id"] == body["subnet_id"] for f in p["fixed_ips"])]
            if not ports:
                what = f"subnet {body['subnet_id']}" if body.get("subnet_id") else f"port {body['port_id']}"
                raise NotFound("RouterInterfaceNotFoundForSubnet" if body.get("subnet_id") else
                               "RouterInterfaceNotFound", f"Router {router_id} has no interface on {what}")
            port = ports[0]
            if body.get("subnet_id") and len(port["fixed_ips"]) > 1:
                # as Neutron: a port holding several IPv6 prefixes only loses this one
                kept = [f for f in port["fixed_ips"] if f["subnet_id"] != body["subnet_id"]]
                shrunk = dict(port, fixed_ips=kept, revision_number=port["revision_number"] + 1, updated_at=now())
                self.nb.ports.update(txn, port, shrunk)
                txn.put("port", shrunk)
                removed = [f for f in port["fixed_ips"] if f["subnet_id"] == body["subnet_id"]]
                return _interface_info(router, dict(port, fixed_ips=removed))
            self.nb.ports.remove_owned(txn, port)
            try:
                self._check_routes(txn, router)
            except BadRequest:
                raise Conflict("RouterInterfaceInUseByRoute", f"Router interface {port['id']} is the way to "
                                                              f"a static route's nexthop: remove the route first") from None
            return _interface_info(router, port)

        return run_txn(self.nb.store, body_fn)

    # ------------------------------------------------------------------ floating IPs
    def _associate(self, txn: Txn, fip: dict) -> None:
        """Fill fixed_ip_address and router_id for fip['port_id'] (Neutron's reachability check)."""
        if not fip.get("port_id"):
            fip.update(fixed_ip_address=None, router_id=None, status="DOWN")
            return
        port = txn.require("port", fip["port_id"])
        v4 = [f for f in port["fixed_ips"] if ipaddress.ip_address(f["ip_address"]).version == 4]
        if fip.get("fixed_ip_address"):
            v4 = [f for f in v4 if f["ip_address"] == fip["fixed_ip_address"]]
            if not v4:
                raise BadRequest("BadRequest", f"Port {port['id']} does not have fixed IP {fip['fixed_ip_address']}")
        if not v4:
            raise BadRequest("BadRequest", f"Port {port['id']} has no IPv4 address for a floating IP")
        fixed = v4[0]
        for other in txn.children("floatingip", "port", port["id"]):
            if other["id"] != fip["id"] and other.get("fixed_ip_address") == fixed["ip_address"]:
                raise Conflict("FloatingIPPortAlreadyAssociated",
                               f"Cannot associate floating IP {fip['floating_ip_address']} with port {port['id']} "
                               f"using fixed IP {fixed['ip_address']}: it already has floating IP {other['id']}.")
        for router in txn.children("router", "network", fip["floating_network_id"]):
            interfaces = self._router_ports(txn, router["id"], ROUTER_INTERFACE)
            if any(f["subnet_id"] == fixed["subnet_id"] for p in interfaces for f in p["fixed_ips"]):
                fip.update(fixed_ip_address=fixed["ip_address"], router_id=router["id"], status="ACTIVE")
                return
        raise NotFound("ExternalGatewayForFloatingIPNotFound",
                       f"External network {fip['floating_network_id']} is not reachable from subnet "
                       f"{fixed['subnet_id']}. Therefore, cannot associate Port {port['id']} with a Floating IP.")

    def _create_floatingip(self, txn: Txn, fip: dict) -> None:
        net = txn.require("network", fip["floating_network_id"])
        if not net["router:external"]:
            raise BadRequest("BadRequest", f"Network {net['id']} is not a valid external network")
        fixed = {"fixed_ips": [{"ip_address": fip["floating_ip_address"]}]} if fip["floating_ip_address"] else {}
        port = self.nb.child(txn, "port", {"network_id": net["id"], "device_owner": FLOATINGIP_OWNER,
                                           "device_id": fip["id"], **fixed}, fip["project_id"])
        if not port["fixed_ips"]:
            raise BadRequest("ExternalIpAddressExhausted",
                             f"Unable to find any IP address on external network {net['id']}.")
        fip["floating_ip_address"] = port["fixed_ips"][0]["ip_address"]
        self._associate(txn, fip)

    def _update_floatingip(self, txn: Txn, old: dict, new: dict) -> None:
        if new.get("port_id") != old.get("port_id") and new.get("fixed_ip_address") == old.get("fixed_ip_address"):
            new["fixed_ip_address"] = None  # a new port: pick its address again
        self._associate(txn, new)

    def _delete_floatingip(self, txn: Txn, fip: dict) -> None:
        for port in txn.children("port", "floatingip", fip["id"]):
            self.nb.ports.remove_owned(txn, port)


def _check_router_subnets(txn: Txn, attached: set[str], new: list[str]) -> None:
    """Neutron: a router's subnets do not overlap (it could not tell where to route)."""
    for new_id in new:
        cidr = ipaddress.ip_network(txn.require("subnet", new_id)["cidr"])
        for old_id in attached:
            old = ipaddress.ip_network(txn.require("subnet", old_id)["cidr"])
            if old.version == cidr.version and old.overlaps(cidr):
                raise BadRequest("BadRequest", f"Bad router request: Cidr {cidr} of subnet {new_id} overlaps with "
                                               f"cidr {old} of subnet {old_id}.")


def _interface_info(router: dict, port: dict, subnet_id: str | None = None) -> dict:
    """Neutron's answer to add/remove_router_interface (`subnet_id`: the one added or removed)."""
    subnet_ids = [f["subnet_id"] for f in port["fixed_ips"]]
    return {"id": router["id"], "tenant_id": router["project_id"], "project_id": router["project_id"],
            "port_id": port["id"], "network_id": port["network_id"], "subnet_id": subnet_id or subnet_ids[0],
            "subnet_ids": subnet_ids}
