"""Octavia v2: load balancers and their VIP ports, listeners, pools, members, health
monitors (their probe-source ports), and provisioning and operating status. What the
dfxdp provider accepts, and the status roll-ups, are dfxdp/nb/octavia.py."""
from __future__ import annotations

from .. import ipam, octavia
from ..errors import BadRequest, Conflict
from ..txn import Txn, run_txn
from .base import Family, Hooks, children, exists
from .ports import LB_VIP_OWNER


class LoadBalancers(Family):
    def hooks(self) -> dict[str, Hooks]:
        return {"loadbalancer": Hooks(self._create_loadbalancer, None, self._delete_loadbalancer,
                                      self._show_listeners_and_pools,
                                      (children("listener", "loadbalancer", exists), children("pool", "loadbalancer", exists))),
                "listener": Hooks(self._create_listener, self._update_listener, self._delete_listener),
                "pool": Hooks(self._create_pool, octavia.pool_updated, self._delete_pool, self._show_members,
                              (children("member", "pool", exists),)),
                "member": Hooks(self._create_member, octavia.member_updated, self._delete_member),
                "healthmonitor": Hooks(self._create_healthmonitor, octavia.monitor_updated,
                                       self._delete_healthmonitor)}

    def _create_loadbalancer(self, txn: Txn, lb: dict) -> None:
        subnet, port = octavia.vip_placement(txn, lb)
        if port is None:
            fixed = [{"subnet_id": subnet["id"], **({"ip_address": lb["vip_address"]} if lb["vip_address"] else {})}]
            port = self.nb.child(txn, "port", {"network_id": subnet["network_id"], "device_owner": LB_VIP_OWNER,
                                               "device_id": lb["id"], "fixed_ips": fixed}, lb["project_id"])
        address = next(f["ip_address"] for f in port["fixed_ips"] if f["subnet_id"] == subnet["id"])
        lb.update(vip_port_id=port["id"], vip_network_id=subnet["network_id"], vip_subnet_id=subnet["id"],
                  vip_address=address, provisioning_status="PENDING_CREATE")

    def _delete_loadbalancer(self, txn: Txn, lb: dict) -> None:
        if txn.children("listener", "loadbalancer", lb["id"]) or txn.children("pool", "loadbalancer", lb["id"]):
            raise Conflict("LoadBalancerInUse", f"Load balancer {lb['id']} still has listeners or pools")
        port = txn.get("port", lb["vip_port_id"])
        if port and port["device_owner"] == LB_VIP_OWNER and port["device_id"] == lb["id"]:  # not a user's port
            self.nb.ports.remove_owned(txn, port)

    def _show_listeners_and_pools(self, docs: list[dict]) -> None:
        txn, ids = Txn(self.nb.store), [doc["id"] for doc in docs]
        listeners = txn.children_of("listener", "loadbalancer", ids)
        pools = txn.children_of("pool", "loadbalancer", ids)
        for doc in docs:
            doc["listeners"] = [{"id": x["id"]} for x in listeners[doc["id"]]]
            doc["pools"] = [{"id": x["id"]} for x in pools[doc["id"]]]

    @staticmethod
    def _check_default_pool(txn: Txn, listener: dict) -> None:
        if listener.get("default_pool_id"):
            pool = txn.require("pool", listener["default_pool_id"])
            if pool.get("loadbalancer_id") not in (None, listener["loadbalancer_id"]):
                raise BadRequest("BadRequest", "default_pool_id belongs to another load balancer")

    def _create_listener(self, txn: Txn, listener: dict) -> None:
        octavia.check_listener(listener)
        txn.require("loadbalancer", listener["loadbalancer_id"])
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

    @staticmethod
    def _delete_listener(txn: Txn, listener: dict) -> None:
        for pool in txn.children("pool", "listener", listener["id"]):
            raise Conflict("ListenerInUse", f"Listener {listener['id']} still has pool {pool['id']}")
        octavia.mark_pending(txn, listener["loadbalancer_id"])

    @staticmethod
    def _create_pool(txn: Txn, pool: dict) -> None:
        octavia.check_pool(pool)
        if not pool.get("listener_id") and not pool.get("loadbalancer_id"):
            raise BadRequest("BadRequest", "A pool needs a listener_id or a loadbalancer_id")
        if pool.get("listener_id"):
            listener = txn.require("listener", pool["listener_id"])
            pool["loadbalancer_id"] = pool.get("loadbalancer_id") or listener["loadbalancer_id"]
            if listener.get("default_pool_id"):
                raise Conflict("DuplicatePool", f"Listener {listener['id']} already has a default pool")
            listener.update(default_pool_id=pool["id"], revision_number=listener["revision_number"] + 1)
            txn.put("listener", listener)
        txn.require("loadbalancer", pool["loadbalancer_id"])
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

    def _show_members(self, docs: list[dict]) -> None:
        found = Txn(self.nb.store).children_of("member", "pool", [doc["id"] for doc in docs])
        for doc in docs:
            doc["members"] = [{"id": member["id"]} for member in found[doc["id"]]]

    def _create_member(self, txn: Txn, member: dict) -> None:
        pool = txn.require("pool", member["pool_id"])
        member["operating_status"] = "ONLINE" if pool.get("healthmonitor_id") else "NO_MONITOR"
        if member.get("subnet_id"):
            subnet = txn.require("subnet", member["subnet_id"])
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
        pool = txn.require("pool", hm["pool_id"])
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
        octavia.sync_monitor_ports(txn, lambda t, fields, project: self.nb.child(t, "port", fields, project),
                                   self.nb.ports.remove_owned)

    def delete(self, lb_id: str, cascade: bool = False) -> None:
        """DELETE …/loadbalancers/<id>; with cascade its listeners, pools, members and monitors too."""
        if not cascade:
            return self.nb.delete("loadbalancer", lb_id)

        def body_fn(txn: Txn) -> None:
            lb = txn.require("loadbalancer", lb_id)
            octavia.delete_children(txn, lb)
            self._sync_monitor_ports(txn)
            self._delete_loadbalancer(txn, lb)
            txn.delete("loadbalancer", lb_id)

        run_txn(self.nb.store, body_fn)

    def set_active(self, lb_id: str, revision: int) -> None:
        """For agents: the load balancer as of `revision` is programmed (PENDING_* -> ACTIVE)."""
        run_txn(self.nb.store, lambda txn: octavia.mark_active(txn, lb_id, revision))

    def set_member_status(self, member_id: str, status: str) -> None:
        """For agents' health monitors: ONLINE, ERROR …, rolled up to pool and load balancer."""
        run_txn(self.nb.store, lambda txn: octavia.set_member_status(txn, member_id, status))
