"""The NB service: every validation and every write of the northbound model.

The REST API and the agents call this; it stores each object as JSON at
/dfxdp/nb/<kind>/<id> (see docs/api.md) through optimistic transactions
(dfxdp/nb/txn.py): a rejected request changes nothing.
"""
from __future__ import annotations

import copy
import ipaddress
import random
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from pydantic import ValidationError

from . import dns, ipam, octavia, segments, validate
from .db.base import KV, Store
from .errors import BadRequest, Conflict, NotFound, not_found
from .index import FLOATINGIP_OWNER, ROUTER_GATEWAY, ROUTER_INTERFACE
from .model import DEFAULT_PROJECT, MODELS
from .rules import validate_rule
from .txn import ALLOC, KeyAllocator, Txn, obj_key, run_txn

KEY_LIMITS = {"network": 1 << 24}  # a network key is its VXLAN VNI
DEFAULT_KEY_LIMIT = 1 << 31
LB_VIP_OWNER = "Octavia"
# Neutron makes sure a project has its default group when it creates these
NEEDS_DEFAULT_GROUP = {"network", "port", "security_group"}
DHCP_OWNER = "network:dhcp"
DHCP_DEVICE_ID = "reserved_dhcp_port"  # Neutron's id for a DHCP port no agent has taken
PORT_STATUSES = {"ACTIVE", "DOWN", "BUILD", "ERROR"}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def mac_key(network_id: str, mac: str) -> str:
    return f"{ALLOC}mac/{network_id}/{mac.lower()}"


def default_group_key(project: str) -> str:
    """The reservation that makes a project's default security group one of a kind."""
    return f"{ALLOC}default-sg/{project}"


class NBService:
    def __init__(self, store: Store, default_project: str = DEFAULT_PROJECT, dns_domain: str = dns.DEFAULT_DOMAIN):
        self.store = store
        self.default_project = default_project
        dns.check_domain(dns_domain)
        self.dns_domain = dns_domain  # the server-wide default of networks' dns_domain
        self.keys = KeyAllocator()
        # project -> its default group's reservation as last seen: a create then needs no read of
        # it, only the guard (a stale one fails the commit, is forgotten, and the retry reads it)
        self._default_groups: dict[str, KV] = {}
        self._create_hooks: dict[str, Callable[[Txn, dict], None]] = {
            "network": self._create_network, "subnet": self._create_subnet, "port": self._create_port,
            "router": self._create_router, "security_group": self._create_security_group,
            "security_group_rule": self._create_rule, "floatingip": self._create_floatingip,
            "loadbalancer": self._create_loadbalancer, "listener": self._create_listener,
            "pool": self._create_pool, "member": self._create_member, "healthmonitor": self._create_healthmonitor,
        }
        self._update_hooks: dict[str, Callable[[Txn, dict, dict], None]] = {
            "network": self._update_network, "port": self._update_port, "router": self._update_router,
            "floatingip": self._update_floatingip,
            "subnet": self._update_subnet, "listener": self._update_listener,
            "pool": octavia.pool_updated, "member": octavia.member_updated, "healthmonitor": octavia.monitor_updated,
            "security_group": self._update_security_group,
        }
        self._delete_hooks: dict[str, Callable[[Txn, dict], None]] = {
            "network": self._delete_network, "subnet": self._delete_subnet, "port": self._delete_port,
            "router": self._delete_router, "security_group": self._delete_security_group,
            "floatingip": self._delete_floatingip, "loadbalancer": self._delete_loadbalancer,
            "listener": self._delete_listener, "pool": self._delete_pool,
            "member": self._delete_member, "healthmonitor": self._delete_healthmonitor,
        }

    # ------------------------------------------------------------------ generic
    def _model(self, kind: str):
        if kind not in MODELS:
            raise NotFound("ResourceNotFound", f"unknown resource type {kind}")
        return MODELS[kind]

    def _validate(self, kind: str, doc: dict) -> dict:
        try:
            return self._model(kind).model_validate(doc).model_dump(by_alias=True)
        except ValidationError as exc:
            raise BadRequest("HTTPBadRequest", f"Invalid input for {kind}: {_validation_message(exc)}") from None

    def get(self, kind: str, obj_id: str) -> dict:
        self._model(kind)
        doc = Txn(self.store).get(kind, obj_id)
        if doc is None:
            raise not_found(kind, obj_id)
        return self._decorate(kind, [doc])[0]

    def list(self, kind: str, filters: dict[str, list[str]] | None = None, project: str | None = None) -> list[dict]:
        """Objects of a kind; `project` is the requesting project's, if any."""
        self._model(kind)
        if kind == "security_group":  # Neutron: a project's listing shows its default group
            projects = (filters or {}).get("project_id") or (filters or {}).get("tenant_id") or [project]
            self.ensure_default_security_group(projects[0] or None)
        docs = self._decorate(kind, Txn(self.store).list(kind))
        for field, wanted in (filters or {}).items():
            docs = [d for d in docs if _matches(d.get(field), wanted)]
        return sorted(docs, key=lambda d: (d.get("created_at", ""), d["id"]))

    def _decorate(self, kind: str, docs: list[dict]) -> list[dict]:
        """Fill fields derived from other objects (Neutron shows them, we do not store them)."""
        children = {"network": ("subnet", "network_id", "subnets", lambda c: c["id"]),
                    "security_group": ("security_group_rule", "security_group_id", "security_group_rules",
                                       lambda c: {**c, "tenant_id": c["project_id"]}),
                    "pool": ("member", "pool_id", "members", lambda c: {"id": c["id"]})}
        if kind in children and docs:
            child_kind, ref, field, shape = children[kind]
            by_parent: dict[str, list] = {}
            for child in Txn(self.store).list(child_kind):
                by_parent.setdefault(child.get(ref), []).append(shape(child))
            for doc in docs:
                doc[field] = by_parent.get(doc["id"], [])
        if kind == "loadbalancer" and docs:
            txn = Txn(self.store)
            listeners, pools = txn.list("listener"), txn.list("pool")
            for doc in docs:
                doc["listeners"] = [{"id": x["id"]} for x in listeners if x["loadbalancer_id"] == doc["id"]]
                doc["pools"] = [{"id": x["id"]} for x in pools if x.get("loadbalancer_id") == doc["id"]]
        if kind == "port" and docs:
            chassis = {c["id"] for c in Txn(self.store).list("chassis")}
            for doc in docs:
                doc.update(_binding(doc, chassis))
        for doc in docs:
            if "project_id" in doc:
                doc["tenant_id"] = doc["project_id"]
        return docs

    def create(self, kind: str, body: dict, project_id: str | None = None) -> dict:
        return self.create_many(kind, [body], project_id)[0]

    def create_many(self, kind: str, bodies: list[dict], project_id: str | None = None) -> list[dict]:
        """Neutron's bulk create: every object or none, in one NB transaction (each checked
        against the store and the ones before it, as if created one after the other)."""
        docs = [self._new_document(kind, body, project_id) for body in bodies]

        def body_fn(txn: Txn) -> list[dict]:
            return [self._insert(txn, kind, doc) for doc in docs]

        return self._decorate(kind, run_txn(self.store, body_fn))

    def _new_document(self, kind: str, body: dict, project_id: str | None) -> dict:
        """A create's body checked on its own (no store read): the model's fields and types."""
        model = self._model(kind)
        body = dict(body)
        project = body.pop("tenant_id", None) or body.get("project_id") or project_id or self.default_project
        owned = sorted(set(body) & model.SERVER_OWNED)
        if owned:
            raise BadRequest("HTTPBadRequest", f"Attribute(s) {', '.join(owned)} cannot be set by a client")
        return self._validate(kind, {**body, "project_id": project})

    def _insert(self, txn: Txn, kind: str, doc: dict) -> dict:
        new = copy.deepcopy(doc)  # hooks fill nested fields; a retried transaction starts anew
        new["id"] = str(uuid.uuid4())
        new["created_at"] = new["updated_at"] = _now()
        new["revision_number"] = 1
        new["key"] = self.keys.next(txn, kind, KEY_LIMITS.get(kind, DEFAULT_KEY_LIMIT))
        if kind in NEEDS_DEFAULT_GROUP:
            self._default_security_group(txn, new["project_id"])
        hook = self._create_hooks.get(kind)
        if hook:
            hook(txn, new)
        txn.put(kind, new)
        return new

    def update(self, kind: str, obj_id: str, body: dict) -> dict:
        model = self._model(kind)
        body = {k: v for k, v in body.items() if k != "tenant_id"}
        owned = sorted(set(body) & (model.SERVER_OWNED | {"project_id"}))
        if owned:
            raise BadRequest("HTTPBadRequest", f"Attribute(s) {', '.join(owned)} cannot be updated")

        def body_fn(txn: Txn) -> dict:
            old = txn.get(kind, obj_id)
            if old is None:
                raise not_found(kind, obj_id)
            changed = sorted(f for f in model.IMMUTABLE & set(body) if body[f] != old.get(f))
            if changed:
                raise BadRequest("HTTPBadRequest", f"Attribute(s) {', '.join(changed)} of a {kind} cannot be changed")
            new = self._validate(kind, {**old, **body})
            new["revision_number"] = old["revision_number"] + 1
            new["updated_at"] = _now()
            hook = self._update_hooks.get(kind)
            if hook:
                hook(txn, old, new)
            txn.put(kind, new)
            return new

        return self._decorate(kind, [run_txn(self.store, body_fn)])[0]

    def delete(self, kind: str, obj_id: str) -> None:
        self._model(kind)

        def body_fn(txn: Txn) -> None:
            old = txn.get(kind, obj_id)
            if old is None:
                raise not_found(kind, obj_id)
            hook = self._delete_hooks.get(kind)
            if hook:
                hook(txn, old)
            txn.delete(kind, obj_id)

        run_txn(self.store, body_fn)

    def _require(self, txn: Txn, kind: str, obj_id: str | None) -> dict:
        doc = txn.get(kind, obj_id) if obj_id else None
        if doc is None:
            raise not_found(kind, obj_id or "(none)")
        return doc

    def _child(self, txn: Txn, kind: str, fields: dict, project: str) -> dict:
        """An object created on behalf of another (gateway ports, VIP ports …)."""
        doc = self._validate(kind, {**fields, "project_id": project})
        doc.update(id=str(uuid.uuid4()), created_at=_now(), updated_at=_now(), revision_number=1,
                   key=self.keys.next(txn, kind, KEY_LIMITS.get(kind, DEFAULT_KEY_LIMIT)))
        if kind == "port":
            self._create_port(txn, doc)
        txn.put(kind, doc)
        return doc

    # ------------------------------------------------------------------ networks
    def _create_network(self, txn: Txn, net: dict) -> None:
        key = segments.fill(net)
        if key and not txn.reserve(key, net["id"]):
            raise segments.in_use(net)
        dns.check_domain(net["dns_domain"])

    def _update_network(self, txn: Txn, old: dict, new: dict) -> None:
        dns.check_domain(new["dns_domain"])
        if new["dns_domain"] != old["dns_domain"]:  # every name in the network moves to the new domain
            for port in txn.children("port", "network", new["id"]):
                self._assign_dns(txn, port, new, port.get("dns_assignment") or [])
                port.update(revision_number=port["revision_number"] + 1, updated_at=_now())
                txn.put("port", port)

    def _delete_network(self, txn: Txn, net: dict) -> None:
        # As in Neutron, its DHCP port goes with it, and so do an external network's floating IPs
        # that no port uses.
        for port in txn.children("port", "network", net["id"]):
            if port["device_owner"] == DHCP_OWNER:
                self._remove_owned_port(txn, port)
                continue
            fip = txn.get("floatingip", port["device_id"]) if port["device_owner"] == FLOATINGIP_OWNER else None
            if fip and not fip.get("port_id"):
                self._remove_owned_port(txn, port)
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

    # ------------------------------------------------------------------ subnets
    def _create_subnet(self, txn: Txn, subnet: dict) -> None:
        self._require(txn, "network", subnet["network_id"])
        net = ipaddress.ip_network(subnet["cidr"])
        if subnet["gateway_ip"] == "":
            subnet["gateway_ip"] = ipam.default_gateway(subnet["cidr"]) if net.num_addresses > 2 else None
        if not subnet["allocation_pools"]:
            subnet["allocation_pools"] = ipam.default_pools(subnet["cidr"], subnet["gateway_ip"])
        validate.check_gateway(subnet, None, lambda address: None)
        ipam.check_subnet(subnet, txn.children("subnet", "network", subnet["network_id"]))
        txn.put("subnet", subnet)  # visible to the DHCP port's address allocation below
        self._sync_dhcp_port(txn, subnet["network_id"], subnet["project_id"])

    def _update_subnet(self, txn: Txn, old: dict, new: dict) -> None:
        if new["gateway_ip"] == "":
            new["gateway_ip"] = old["gateway_ip"]
        validate.check_gateway(new, old, lambda address: (txn.get_raw(ipam.ip_key(new["id"], address))
                                                          or b"").decode())
        ipam.check_subnet(new, txn.children("subnet", "network", new["network_id"]))
        txn.put("subnet", new)
        self._sync_dhcp_port(txn, new["network_id"], new["project_id"])

    def _delete_subnet(self, txn: Txn, subnet: dict) -> None:
        self._sync_dhcp_port(txn, subnet["network_id"], subnet["project_id"], leaving=subnet["id"])
        if txn.children("port", "subnet", subnet["id"]):
            raise Conflict("SubnetInUse", f"Unable to complete operation on subnet {subnet['id']}: "
                                          f"one or more ports have an IP allocation from this subnet.")

    # ------------------------------------------------------------------ ports
    def _subnets_of(self, txn: Txn, network_id: str) -> list[dict]:
        return sorted(txn.children("subnet", "network", network_id),
                      key=lambda s: (s["ip_version"], s["created_at"], s["id"]))

    def _assign_fixed_ips(self, txn: Txn, port: dict, requested: list[dict], keep: list[dict]) -> list[dict]:
        """Reserve requested fixed IPs (or one per IP version by default); `keep` are already held."""
        subnets = {s["id"]: s for s in self._subnets_of(txn, port["network_id"])}
        held = {(f["subnet_id"], f["ip_address"]) for f in keep}
        result = []
        if requested is None:  # left out: Neutron's default of one address per IP version
            for version in (4, 6):
                candidates = [s for s in subnets.values() if s["ip_version"] == version]
                if candidates:
                    result.append(self._allocate_any(txn, candidates, port["id"]))
            return result
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
            if address and (subnet_id, address) in held:
                result.append({"subnet_id": subnet_id, "ip_address": address})
            elif address:
                validate.check_fixed_ip(subnet, address, port["device_owner"])
                ipam.reserve(txn, subnet, address, port["id"])
                result.append({"subnet_id": subnet_id, "ip_address": address})
            else:
                result.append({"subnet_id": subnet_id, "ip_address": ipam.allocate(txn, subnet, port["id"])})
        return result

    def _allocate_any(self, txn: Txn, subnets: list[dict], owner: str) -> dict:
        """An address from the first of `subnets` that has one free."""
        for subnet in subnets[:-1]:
            try:
                return {"subnet_id": subnet["id"], "ip_address": ipam.allocate(txn, subnet, owner)}
            except Conflict:
                continue
        return {"subnet_id": subnets[-1]["id"], "ip_address": ipam.allocate(txn, subnets[-1], owner)}

    def _reserve_mac(self, txn: Txn, port: dict) -> None:
        if port["mac_address"]:
            port["mac_address"] = port["mac_address"].lower()
            if not txn.reserve(mac_key(port["network_id"], port["mac_address"]), port["id"]):
                raise Conflict("MacAddressInUse", f"Unable to complete operation for network {port['network_id']}. "
                                                  f"The mac address {port['mac_address']} is in use.")
            return
        # 2^24 random MACs per network: a taken one is rare enough to cost a retry of the
        # whole transaction rather than a read on every create
        port["mac_address"] = "fa:16:3e:%02x:%02x:%02x" % tuple(random.randrange(256) for _ in range(3))
        txn.claim(mac_key(port["network_id"], port["mac_address"]), port["id"])

    def _default_security_group(self, txn: Txn, project: str) -> str:
        """The id of the project's default group, made on its first need: its reservation
        key lets exactly one of any number of racing first requests create it."""
        key = default_group_key(project)
        remembered = self._default_groups.get(project)
        if remembered:
            txn.assume(remembered)
            txn.on_conflict(lambda: self._default_groups.pop(project, None))
        held = txn.get_raw(key)
        if held is not None:
            if txn.stored(key):
                self._default_groups[project] = txn.stored(key)
            return held.decode()
        sg_id = self._legacy_default_group(txn, project) or self._create_default_group(txn, project)
        txn.reserve(key, sg_id)

        def remember(revision: int) -> None:
            self._default_groups[project] = KV(key, sg_id.encode(), revision, revision)

        txn.on_commit(remember)
        return sg_id

    def _legacy_default_group(self, txn: Txn, project: str) -> str | None:
        """A default group a store kept from before default groups were reserved."""
        for sg in txn.list("security_group"):
            if sg["name"] == "default" and sg["project_id"] == project:
                txn.get_raw(obj_key("security_group", sg["id"]))  # guard: it must still be there
                return sg["id"]
        return None

    def _create_default_group(self, txn: Txn, project: str) -> str:
        sg = self._child(txn, "security_group", {"name": "default", "description": "Default security group"},
                         project)
        for ethertype in ("IPv4", "IPv6"):
            self._child(txn, "security_group_rule", {"security_group_id": sg["id"], "direction": "egress",
                                                     "ethertype": ethertype}, project)
            self._child(txn, "security_group_rule", {"security_group_id": sg["id"], "direction": "ingress",
                                                     "ethertype": ethertype, "remote_group_id": sg["id"]}, project)
        return sg["id"]

    def ensure_default_security_group(self, project: str | None = None) -> str:
        return run_txn(self.store, lambda txn: self._default_security_group(txn, project or self.default_project))

    def _check_port_security(self, txn: Txn, port: dict, net: dict) -> None:
        if port["port_security_enabled"] is None:
            port["port_security_enabled"] = net["port_security_enabled"]
        owned_by_network = port["device_owner"].startswith("network:") or port["device_owner"] == LB_VIP_OWNER
        if port["security_groups"] is None:  # the default group's reservation guards its existence
            port["security_groups"] = ([self._default_security_group(txn, port["project_id"])]
                                       if port["port_security_enabled"] and not owned_by_network else [])
        else:
            for sg_id in port["security_groups"]:
                self._require(txn, "security_group", sg_id)
        validate.fill_pair_macs(port)
        if not port["port_security_enabled"] and (port["security_groups"] or port["allowed_address_pairs"]):
            raise BadRequest("PortSecurityAndIPRequiredForSecurityGroups",
                             "Port security must be enabled to have security groups or allowed address pairs.")

    def _create_port(self, txn: Txn, port: dict) -> None:
        net = self._require(txn, "network", port["network_id"])
        self._reserve_mac(txn, port)
        port["fixed_ips"] = self._assign_fixed_ips(txn, port, port["fixed_ips"], [])
        self._check_port_security(txn, port, net)
        self._assign_dns(txn, port, net, [])

    def _update_port(self, txn: Txn, old: dict, new: dict) -> None:
        net = self._require(txn, "network", new["network_id"])
        self._default_security_group(txn, old["project_id"])
        if new["mac_address"].lower() != old["mac_address"]:
            txn.release(mac_key(old["network_id"], old["mac_address"]))
            self._reserve_mac(txn, new)
        if new["fixed_ips"] != old["fixed_ips"]:
            new_ips = self._assign_fixed_ips(txn, new, new["fixed_ips"], old["fixed_ips"])
            for fixed in old["fixed_ips"]:
                if fixed not in new_ips:
                    ipam.release(txn, fixed["subnet_id"], fixed["ip_address"])
            new["fixed_ips"] = new_ips
        self._check_port_security(txn, new, net)
        self._assign_dns(txn, new, net, old.get("dns_assignment") or [])

    def _assign_dns(self, txn: Txn, port: dict, net: dict, previous: list[dict]) -> None:
        """Check the port's dns_name under its network's domain, fill its dns_assignment and
        hold its names (`previous`: the assignment it had)."""
        domain = dns.effective_domain(net, self.dns_domain)
        dns.check_name(port["dns_name"], domain)
        port["dns_assignment"] = dns.assignment(port, domain)
        dns.claim_names(txn, port, previous)

    def _sync_dhcp_port(self, txn: Txn, network_id: str, project: str, leaving: str | None = None) -> None:
        """As Neutron: a network's DHCP port (network:dhcp) holds one address on each subnet
        with DHCP enabled; it is the DHCP and DNS server VMs are told about. `leaving`: a
        subnet being deleted."""
        wanted = [s["id"] for s in self._subnets_of(txn, network_id) if s["enable_dhcp"] and s["id"] != leaving]
        port = next((p for p in txn.children("port", "network", network_id) if p["device_owner"] == DHCP_OWNER), None)
        if port is None:
            if wanted:
                self._child(txn, "port", {"network_id": network_id, "device_owner": DHCP_OWNER,
                                          "device_id": DHCP_DEVICE_ID,
                                          "fixed_ips": [{"subnet_id": s} for s in wanted]}, project)
            return
        held = {f["subnet_id"] for f in port["fixed_ips"]}
        if held == set(wanted):
            return
        if not wanted:
            self._remove_owned_port(txn, port)
            return
        requested = [f for f in port["fixed_ips"] if f["subnet_id"] in wanted] + \
                    [{"subnet_id": s} for s in wanted if s not in held]
        new = dict(port, fixed_ips=requested, revision_number=port["revision_number"] + 1, updated_at=_now())
        self._update_port(txn, port, new)
        txn.put("port", new)

    def _delete_port(self, txn: Txn, port: dict, by_owner: bool = False) -> None:
        if port["device_owner"] in (ROUTER_INTERFACE, ROUTER_GATEWAY, FLOATINGIP_OWNER) and not by_owner:
            raise Conflict("PortInUse", f"Port {port['id']} is owned by {port['device_owner']} "
                                        f"{port['device_id']}: remove it through its owner")
        txn.release(mac_key(port["network_id"], port["mac_address"]))
        for fixed in port["fixed_ips"]:
            ipam.release(txn, fixed["subnet_id"], fixed["ip_address"])
        dns.release_names(txn, port)
        for fip in txn.children("floatingip", "port", port["id"]):
            fip.update(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN",
                       revision_number=fip["revision_number"] + 1, updated_at=_now())
            txn.put("floatingip", fip)

    def _remove_owned_port(self, txn: Txn, port: dict) -> None:
        self._delete_port(txn, port, by_owner=True)
        txn.delete("port", port["id"])

    # ------------------------------------------------------------------ routers
    def _router_ports(self, txn: Txn, router_id: str, owner: str) -> list[dict]:
        return [p for p in txn.children("port", "router", router_id) if p["device_owner"] == owner]

    def _set_gateway(self, txn: Txn, router: dict, old_info: dict | None) -> None:
        info = router["external_gateway_info"]
        if old_info and (not info or info["network_id"] != old_info["network_id"]):
            for port in self._router_ports(txn, router["id"], ROUTER_GATEWAY):
                self._remove_owned_port(txn, port)
            if info is None:
                return
        elif old_info and info:
            info["external_fixed_ips"] = old_info["external_fixed_ips"]
            return
        if not info:
            return
        net = self._require(txn, "network", info["network_id"])
        if not net["router:external"]:
            raise BadRequest("BadRequest", f"Network {net['id']} is not an external network")
        fixed = {"fixed_ips": info["external_fixed_ips"]} if info["external_fixed_ips"] else {}
        port = self._child(txn, "port", {"network_id": net["id"], "device_owner": ROUTER_GATEWAY,
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
            self._remove_owned_port(txn, port)

    def add_router_interface(self, router_id: str, body: dict) -> dict:
        if bool(body.get("subnet_id")) == bool(body.get("port_id")):
            raise BadRequest("BadRequest", "Either subnet_id or port_id must be specified (not both)")

        def body_fn(txn: Txn) -> dict:
            router = self._require(txn, "router", router_id)
            attached = {f["subnet_id"] for p in self._router_ports(txn, router_id, ROUTER_INTERFACE)
                        for f in p["fixed_ips"]}
            if body.get("subnet_id"):
                subnet = self._require(txn, "subnet", body["subnet_id"])
                if subnet["id"] in attached:
                    raise BadRequest("BadRequest", f"Router already has a port on subnet {subnet['id']}")
                if not subnet["gateway_ip"]:
                    raise BadRequest("BadRequest", f"Subnet {subnet['id']} has no gateway IP")
                port = self._child(txn, "port", {
                    "network_id": subnet["network_id"], "device_owner": ROUTER_INTERFACE, "device_id": router_id,
                    "fixed_ips": [{"subnet_id": subnet["id"], "ip_address": subnet["gateway_ip"]}]},
                    router["project_id"])
            else:
                port = self._require(txn, "port", body["port_id"])
                if port["device_owner"] or port["device_id"]:
                    raise Conflict("PortInUse", f"Port {port['id']} is in use by {port['device_owner'] or 'a device'}")
                if not port["fixed_ips"]:
                    raise BadRequest("BadRequest", f"Port {port['id']} has no fixed IP")
                if attached & {f["subnet_id"] for f in port["fixed_ips"]}:
                    raise BadRequest("BadRequest", "Router already has a port on that subnet")
                port.update(device_owner=ROUTER_INTERFACE, device_id=router_id, security_groups=[],
                            revision_number=port["revision_number"] + 1, updated_at=_now())
                txn.put("port", port)
            return _interface_info(router, port)

        return run_txn(self.store, body_fn)

    def remove_router_interface(self, router_id: str, body: dict) -> dict:
        if not body.get("subnet_id") and not body.get("port_id"):
            raise BadRequest("BadRequest", "Either subnet_id or port_id must be specified")

        def body_fn(txn: Txn) -> dict:
            router = self._require(txn, "router", router_id)
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
            self._remove_owned_port(txn, port)
            try:
                self._check_routes(txn, router)
            except BadRequest:
                raise Conflict("RouterInterfaceInUseByRoute", f"Router interface {port['id']} is the way to "
                                                              f"a static route's nexthop: remove the route first") from None
            return _interface_info(router, port)

        return run_txn(self.store, body_fn)

    # ------------------------------------------------------------------ security groups
    def _create_security_group(self, txn: Txn, sg: dict) -> None:
        if sg["name"] == "default":  # the project's one default group exists by now (NEEDS_DEFAULT_GROUP)
            raise Conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
        for ethertype in ("IPv4", "IPv6"):  # Neutron: every new group allows all egress
            self._child(txn, "security_group_rule", {"security_group_id": sg["id"], "direction": "egress",
                                                     "ethertype": ethertype}, sg["project_id"])

    def _create_rule(self, txn: Txn, rule: dict) -> None:
        self._require(txn, "security_group", rule["security_group_id"])
        validate_rule(rule)
        if rule["remote_group_id"] and rule["remote_ip_prefix"]:
            raise BadRequest("SecurityGroupRemoteGroupAndRemoteIpPrefix",
                             "Only remote_ip_prefix or remote_group_id may be provided.")
        if rule["remote_group_id"]:
            self._require(txn, "security_group", rule["remote_group_id"])
        same = ("security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                "remote_ip_prefix", "remote_group_id")
        for other in txn.children("security_group_rule", "security_group", rule["security_group_id"]):
            if all(other.get(f) == rule.get(f) for f in same):
                raise Conflict("SecurityGroupRuleExists", f"Security group rule already exists. Rule id is {other['id']}.")

    def _update_security_group(self, txn: Txn, old: dict, new: dict) -> None:
        if old["name"] == "default" and new["name"] != "default":
            raise Conflict("SecurityGroupCannotUpdateDefault", "Updating default security group not allowed.")
        if new["name"] == "default" and old["name"] != "default":
            raise Conflict("SecurityGroupDefaultAlreadyExists", "Default security group already exists.")

    def _delete_security_group(self, txn: Txn, sg: dict) -> None:
        users = [p["id"] for p in txn.children("port", "security_group", sg["id"])]
        if users:
            raise Conflict("SecurityGroupInUse", f"Security Group {sg['id']} in use by port(s) {', '.join(users)}")
        key = default_group_key(sg["project_id"])
        if sg["name"] == "default" and txn.get_raw(key) == sg["id"].encode():
            txn.release(key)  # the project's next request makes a new one
            txn.on_commit(lambda _revision: self._default_groups.pop(sg["project_id"], None))
        for rule in txn.children("security_group_rule", "security_group", sg["id"]):
            if rule["security_group_id"] == sg["id"]:
                txn.delete("security_group_rule", rule["id"])
            elif rule.get("remote_group_id") == sg["id"]:
                raise Conflict("SecurityGroupInUse", f"Security Group {sg['id']} is referenced by rule {rule['id']}")

    # ------------------------------------------------------------------ floating IPs
    def _associate(self, txn: Txn, fip: dict) -> None:
        """Fill fixed_ip_address and router_id for fip['port_id'] (Neutron's reachability check)."""
        if not fip.get("port_id"):
            fip.update(fixed_ip_address=None, router_id=None, status="DOWN")
            return
        port = self._require(txn, "port", fip["port_id"])
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
        net = self._require(txn, "network", fip["floating_network_id"])
        if not net["router:external"]:
            raise BadRequest("BadRequest", f"Network {net['id']} is not a valid external network")
        fixed = {"fixed_ips": [{"ip_address": fip["floating_ip_address"]}]} if fip["floating_ip_address"] else {}
        port = self._child(txn, "port", {"network_id": net["id"], "device_owner": FLOATINGIP_OWNER,
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
            self._remove_owned_port(txn, port)

    # ------------------------------------------------------------------ load balancers (Octavia v2)
    def _create_loadbalancer(self, txn: Txn, lb: dict) -> None:
        subnet, port = octavia.vip_placement(txn, lb)
        if port is None:
            fixed = [{"subnet_id": subnet["id"], **({"ip_address": lb["vip_address"]} if lb["vip_address"] else {})}]
            port = self._child(txn, "port", {"network_id": subnet["network_id"], "device_owner": LB_VIP_OWNER,
                                             "device_id": lb["id"], "fixed_ips": fixed}, lb["project_id"])
        address = next(f["ip_address"] for f in port["fixed_ips"] if f["subnet_id"] == subnet["id"])
        lb.update(vip_port_id=port["id"], vip_network_id=subnet["network_id"], vip_subnet_id=subnet["id"],
                  vip_address=address, provisioning_status="PENDING_CREATE")

    def _delete_loadbalancer(self, txn: Txn, lb: dict) -> None:
        if txn.children("listener", "loadbalancer", lb["id"]) or txn.children("pool", "loadbalancer", lb["id"]):
            raise Conflict("LoadBalancerInUse", f"Load balancer {lb['id']} still has listeners or pools")
        port = txn.get("port", lb["vip_port_id"])
        if port and port["device_owner"] == LB_VIP_OWNER and port["device_id"] == lb["id"]:  # not a user's port
            txn.release(mac_key(port["network_id"], port["mac_address"]))
            for fixed in port["fixed_ips"]:
                ipam.release(txn, fixed["subnet_id"], fixed["ip_address"])
            dns.release_names(txn, port)
            txn.delete("port", port["id"])

    def _check_default_pool(self, txn: Txn, listener: dict) -> None:
        if listener.get("default_pool_id"):
            pool = self._require(txn, "pool", listener["default_pool_id"])
            if pool.get("loadbalancer_id") not in (None, listener["loadbalancer_id"]):
                raise BadRequest("BadRequest", "default_pool_id belongs to another load balancer")

    def _create_listener(self, txn: Txn, listener: dict) -> None:
        octavia.check_listener(listener)
        self._require(txn, "loadbalancer", listener["loadbalancer_id"])
        for other in txn.children("listener", "loadbalancer", listener["loadbalancer_id"]):
            if other["protocol_port"] == listener["protocol_port"] and \
                    (other["protocol"] == "UDP") == (listener["protocol"] == "UDP"):
                raise Conflict("DuplicateListener", f"Another listener on this load balancer already uses "
                                                    f"port {listener['protocol_port']}")
        self._check_default_pool(txn, listener)
        octavia.mark_pending(txn, listener["loadbalancer_id"])

    def _update_listener(self, txn: Txn, old: dict, new: dict) -> None:
        self._check_default_pool(txn, new)
        octavia.mark_pending(txn, new["loadbalancer_id"])

    def _delete_listener(self, txn: Txn, listener: dict) -> None:
        for pool in txn.children("pool", "listener", listener["id"]):
            raise Conflict("ListenerInUse", f"Listener {listener['id']} still has pool {pool['id']}")
        octavia.mark_pending(txn, listener["loadbalancer_id"])

    def _create_pool(self, txn: Txn, pool: dict) -> None:
        octavia.check_pool(pool)
        if not pool.get("listener_id") and not pool.get("loadbalancer_id"):
            raise BadRequest("BadRequest", "A pool needs a listener_id or a loadbalancer_id")
        if pool.get("listener_id"):
            listener = self._require(txn, "listener", pool["listener_id"])
            pool["loadbalancer_id"] = pool.get("loadbalancer_id") or listener["loadbalancer_id"]
            if listener.get("default_pool_id"):
                raise Conflict("DuplicatePool", f"Listener {listener['id']} already has a default pool")
            listener.update(default_pool_id=pool["id"], revision_number=listener["revision_number"] + 1)
            txn.put("listener", listener)
        self._require(txn, "loadbalancer", pool["loadbalancer_id"])
        octavia.mark_pending(txn, pool["loadbalancer_id"])

    def _delete_pool(self, txn: Txn, pool: dict) -> None:
        for member in txn.children("member", "pool", pool["id"]):
            txn.delete("member", member["id"])
        for hm in txn.children("healthmonitor", "pool", pool["id"]):
            txn.delete("healthmonitor", hm["id"])
        for listener in txn.children("listener", "pool", pool["id"]):
            listener.update(default_pool_id=None, revision_number=listener["revision_number"] + 1)
            txn.put("listener", listener)
        self._sync_monitor_ports(txn)
        octavia.mark_pending(txn, pool.get("loadbalancer_id"))

    def _create_member(self, txn: Txn, member: dict) -> None:
        pool = self._require(txn, "pool", member["pool_id"])
        member["operating_status"] = "ONLINE" if pool.get("healthmonitor_id") else "NO_MONITOR"
        if member.get("subnet_id"):
            subnet = self._require(txn, "subnet", member["subnet_id"])
            if not ipam.in_subnet(subnet, member["address"]):
                raise BadRequest("BadRequest", f"Member address {member['address']} is not in subnet {subnet['id']}")
        for other in txn.children("member", "pool", member["pool_id"]):
            if (other["address"], other["protocol_port"]) == \
                    (member["address"], member["protocol_port"]):
                raise Conflict("DuplicateMember", f"Member {member['address']}:{member['protocol_port']} "
                                                  f"already exists in pool {member['pool_id']}")
        txn.put("member", member)  # seen by the probe-source port sync below
        self._sync_monitor_ports(txn)
        octavia.mark_pending(txn, octavia.pool_loadbalancer(txn, member["pool_id"]))

    def _delete_member(self, txn: Txn, member: dict) -> None:
        txn.delete("member", member["id"])  # before the sync, which must not count it
        self._sync_monitor_ports(txn)
        octavia.mark_pending(txn, octavia.pool_loadbalancer(txn, member["pool_id"]))

    def _create_healthmonitor(self, txn: Txn, hm: dict) -> None:
        octavia.check_healthmonitor(hm)
        pool = self._require(txn, "pool", hm["pool_id"])
        if hm["timeout"] > hm["delay"]:
            raise BadRequest("BadRequest", "timeout must not be greater than delay")
        if txn.children("healthmonitor", "pool", pool["id"]):
            raise Conflict("DuplicateHealthMonitor", f"Pool {pool['id']} already has a health monitor")
        pool.update(healthmonitor_id=hm["id"], revision_number=pool["revision_number"] + 1)
        txn.put("pool", pool)
        txn.put("healthmonitor", hm)  # seen by the probe-source port sync below
        self._sync_monitor_ports(txn)
        octavia.mark_pending(txn, pool.get("loadbalancer_id"))

    def _delete_healthmonitor(self, txn: Txn, hm: dict) -> None:
        txn.delete("healthmonitor", hm["id"])  # before the sync, which must not count it
        pool = txn.get("pool", hm["pool_id"])
        if pool:
            pool.update(healthmonitor_id=None, revision_number=pool["revision_number"] + 1)
            txn.put("pool", pool)
            for member in txn.children("member", "pool", pool["id"]):  # nothing probes them any more
                octavia.set_member_status(txn, member["id"], "NO_MONITOR")
            octavia.mark_pending(txn, pool.get("loadbalancer_id"))
        self._sync_monitor_ports(txn)

    def _sync_monitor_ports(self, txn: Txn) -> None:
        octavia.sync_monitor_ports(txn, lambda t, fields, project: self._child(t, "port", fields, project),
                                   self._remove_owned_port)

    def delete_loadbalancer(self, lb_id: str, cascade: bool = False) -> None:
        """DELETE …/loadbalancers/<id>; with cascade its listeners, pools, members and monitors too."""
        if not cascade:
            return self.delete("loadbalancer", lb_id)

        def body_fn(txn: Txn) -> None:
            lb = self._require(txn, "loadbalancer", lb_id)
            octavia.delete_children(txn, lb)
            self._sync_monitor_ports(txn)
            self._delete_loadbalancer(txn, lb)
            txn.delete("loadbalancer", lb_id)

        run_txn(self.store, body_fn)

    def set_loadbalancer_active(self, lb_id: str, revision: int) -> None:
        """For agents: the load balancer as of `revision` is programmed (PENDING_* -> ACTIVE)."""
        run_txn(self.store, lambda txn: octavia.mark_active(txn, lb_id, revision))

    def set_member_status(self, member_id: str, status: str) -> None:
        """For agents' health monitors: ONLINE, ERROR …, rolled up to pool and load balancer."""
        run_txn(self.store, lambda txn: octavia.set_member_status(txn, member_id, status))

    # ------------------------------------------------------------------ for agents
    def upsert_chassis(self, name: str, tunnel_ip: str, **attrs: Any) -> dict:
        doc = self._validate("chassis", {"id": name, "name": name, "tunnel_ip": tunnel_ip,
                                         "heartbeat": time.time(), "project_id": self.default_project, **attrs})

        def body_fn(txn: Txn) -> dict:
            old = txn.get("chassis", name)
            new = dict(doc)
            if old:  # what an operator set on it (PUT /v2.0/agents) outlives the agent's restarts
                new.update(admin_state_up=old.get("admin_state_up", True), description=old["description"])
            new["revision_number"] = (old["revision_number"] + 1) if old else 1
            new["created_at"] = old["created_at"] if old else _now()
            new["updated_at"] = _now()
            new["key"] = old["key"] if old else self.keys.next(txn, "chassis", DEFAULT_KEY_LIMIT)
            txn.put("chassis", new)
            return new

        return run_txn(self.store, body_fn)

    def heartbeat(self, name: str) -> dict:
        def body_fn(txn: Txn) -> dict:
            chassis = self._require(txn, "chassis", name)
            chassis.update(heartbeat=time.time(), revision_number=chassis["revision_number"] + 1)
            txn.put("chassis", chassis)
            return chassis

        return run_txn(self.store, body_fn)

    def set_chassis_facts(self, name: str, **facts: Any) -> dict:
        """What an agent publishes about its chassis beyond the heartbeat (e.g. igmp_groups)."""
        def body_fn(txn: Txn) -> dict:
            chassis = self._require(txn, "chassis", name)
            new = self._validate("chassis", {**chassis, **facts})
            new.update(revision_number=chassis["revision_number"] + 1, updated_at=_now())
            txn.put("chassis", new)
            return new

        return run_txn(self.store, body_fn)

    def set_port_status(self, port_id: str, status: str) -> dict:
        if status not in PORT_STATUSES:
            raise BadRequest("InvalidInput", f"port status {status!r} is not one of {sorted(PORT_STATUSES)}")

        def body_fn(txn: Txn) -> dict:
            port = self._require(txn, "port", port_id)
            if port["status"] != status:
                port.update(status=status, revision_number=port["revision_number"] + 1, updated_at=_now())
                txn.put("port", port)
            return port

        return run_txn(self.store, body_fn)


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


def _interface_info(router: dict, port: dict) -> dict:
    """Neutron's answer to add/remove_router_interface."""
    subnet_ids = [f["subnet_id"] for f in port["fixed_ips"]]
    return {"id": router["id"], "tenant_id": router["project_id"], "project_id": router["project_id"],
            "port_id": port["id"], "network_id": port["network_id"], "subnet_id": subnet_ids[0],
            "subnet_ids": subnet_ids}


def _matches(value: Any, wanted: list[str]) -> bool:
    """Neutron list filters: string comparison, repeated values mean OR; booleans as true/false."""
    if isinstance(value, bool):
        value = "true" if value else "false"
        return value in [w.lower() for w in wanted]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return _matches_items(value, wanted)
    if isinstance(value, list):
        return any(str(v) in wanted for v in value)
    return ("" if value is None else str(value)) in wanted


def _matches_items(items: list[dict], wanted: list[str]) -> bool:
    """Neutron's `fixed_ips=ip_address=X&fixed_ips=subnet_id=Y`: one item has every key asked
    for (any of the values given for that key)."""
    by_key: dict[str, set[str]] = {}
    for item in wanted:
        key, sep, value = item.partition("=")
        if not sep:
            return False
        by_key.setdefault(key, set()).add(value)
    return any(all(str(it.get(k)) in values for k, values in by_key.items()) for it in items)
