"""What the dfxdp load balancer (an L4 balancer in XDP, docs/load-balancer.md)
accepts of Octavia's API: anything else is refused with a 400 naming what is
supported, before it reaches NB, rather than accepted and silently not done."""
from __future__ import annotations

from .errors import BadRequest, not_found
from .index import HM_PORT_OWNER
from .txn import Txn

LISTENER_PROTOCOLS = ("TCP", "UDP")
POOL_ALGORITHMS = ("SOURCE_IP_PORT", "SOURCE_IP", "ROUND_ROBIN")
PERSISTENCE_TYPES = ("SOURCE_IP",)
MONITOR_TYPES = ("TCP", "UDP-CONNECT", "HTTP")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


def _refuse(what: str, value, supported: tuple[str, ...]) -> None:
    raise BadRequest("NotSupported", f"{what} {value} is not supported by the dfxdp provider (L4, in XDP): "
                     f"use one of {', '.join(supported)}")


def vip_placement(txn, lb: dict) -> tuple[dict, dict | None]:
    """Where a new load balancer's VIP goes: (its subnet, the user's port or None for a new one).
    By port (its first IPv4 address), by subnet, or by network (its first IPv4 subnet)."""
    if lb.get("vip_port_id"):
        port = txn.get("port", lb["vip_port_id"])
        if port is None:
            raise not_found("port", lb["vip_port_id"])
        for fixed in port["fixed_ips"]:
            subnet = txn.get("subnet", fixed["subnet_id"])
            if subnet and subnet.get("ip_version", 4) == 4:
                return subnet, port
        raise BadRequest("ValidationException", f"Port {port['id']} has no IPv4 address for a VIP")
    if lb.get("vip_subnet_id"):
        subnet = txn.get("subnet", lb["vip_subnet_id"])
        if subnet is None:
            raise not_found("subnet", lb["vip_subnet_id"])
        return subnet, None
    if lb.get("vip_network_id"):
        if txn.get("network", lb["vip_network_id"]) is None:
            raise not_found("network", lb["vip_network_id"])
        subnets = sorted((s for s in txn.list("subnet") if s["network_id"] == lb["vip_network_id"]
                          and s.get("ip_version", 4) == 4), key=lambda s: (s.get("created_at", ""), s["id"]))
        if not subnets:
            raise BadRequest("ValidationException", f"Network {lb['vip_network_id']} has no IPv4 subnet for a VIP")
        return subnets[0], None
    raise BadRequest("ValidationException", "A load balancer needs one of vip_subnet_id, vip_network_id, vip_port_id")


def check_listener(listener: dict) -> None:
    if listener["protocol"] not in LISTENER_PROTOCOLS:
        _refuse("Listener protocol", listener["protocol"], LISTENER_PROTOCOLS)


def check_pool(pool: dict) -> None:
    if pool["protocol"] not in LISTENER_PROTOCOLS:
        _refuse("Pool protocol", pool["protocol"], LISTENER_PROTOCOLS)
    if pool["lb_algorithm"] not in POOL_ALGORITHMS:
        _refuse("Load balancing algorithm", pool["lb_algorithm"], POOL_ALGORITHMS)
    persistence = pool.get("session_persistence")
    if persistence is not None:
        kind = persistence.get("type") if isinstance(persistence, dict) else persistence
        if kind not in PERSISTENCE_TYPES:
            _refuse("Session persistence", kind, PERSISTENCE_TYPES)


def check_healthmonitor(hm: dict) -> None:
    if hm["type"] not in MONITOR_TYPES:
        _refuse("Health monitor type", hm["type"], MONITOR_TYPES)
    if hm["type"] == "HTTP" and hm.get("http_method", "GET") not in HTTP_METHODS:
        _refuse("HTTP method", hm["http_method"], HTTP_METHODS)
    codes = str(hm.get("expected_codes", "200"))
    if not all(part.strip().isdigit() for chunk in codes.split(",") for part in chunk.split("-")):
        raise BadRequest("ValidationException", f"expected_codes {codes!r}: use a code (200), a list (200,202) "
                                                f"or a range (200-204)")


# --- health monitors: where probes come from, and what they found ---------------------



def monitored_subnets(txn) -> set[str]:
    """Subnets holding a member of a pool with a health monitor (a member without a
    subnet is in its load balancer's VIP subnet)."""
    monitored = {hm["pool_id"] for hm in txn.list("healthmonitor")}
    pools = {p["id"]: p for p in txn.list("pool") if p["id"] in monitored}
    vip_subnets = {lb["id"]: lb["vip_subnet_id"] for lb in txn.list("loadbalancer")}
    return {m.get("subnet_id") or vip_subnets.get(pools[m["pool_id"]]["loadbalancer_id"])
            for m in txn.list("member") if m["pool_id"] in pools} - {None}


def sync_monitor_ports(txn, create_port, remove_port) -> None:
    """One probe-source port in every monitored subnet, none elsewhere. The agents probe
    members from its address: the datapath knows it (ARP answers, fdb on each chassis
    hosting a monitored member), so members answer probes like any client, through their
    security groups."""
    wanted = monitored_subnets(txn)
    # the probe ports there are: those of the subnets monitored before this transaction (every
    # change leaves one per monitored subnet) or now, read by subnet, not from every port
    before = monitored_subnets(Txn(txn.store))
    have = {p["device_id"]: p for subnet_id in sorted(wanted | before)
            for p in txn.children("port", "subnet:lb-hm", subnet_id)}
    for subnet_id in sorted(wanted - have.keys()):
        subnet = txn.get("subnet", subnet_id)
        if subnet:
            create_port(txn, {"network_id": subnet["network_id"], "name": f"lb-hm-{subnet_id}",
                              "device_owner": HM_PORT_OWNER, "device_id": subnet_id,
                              "port_security_enabled": False, "security_groups": [],
                              "fixed_ips": [{"subnet_id": subnet_id}]}, subnet["project_id"])
    for subnet_id in sorted(have.keys() - wanted):
        remove_port(txn, have[subnet_id])


def rolled_up(statuses: list[str]) -> str:
    """A parent's operating status from its children's (Octavia's roll-up)."""
    live = [s for s in statuses if s != "OFFLINE"]
    if live and all(s == "ERROR" for s in live):
        return "ERROR"
    return "DEGRADED" if {"ERROR", "DEGRADED"} & set(live) else "ONLINE"


def set_member_status(txn, member_id: str, status: str) -> None:
    """A member's operating status, rolled up to its pool and load balancer in the same txn."""
    member = txn.get("member", member_id)
    if member is None or member["operating_status"] == status:
        return
    member.update(operating_status=status, revision_number=member["revision_number"] + 1)
    txn.put("member", member)
    pool = txn.get("pool", member["pool_id"])
    if pool is None:
        return
    members = [m for m in txn.list("member") if m["pool_id"] == pool["id"]]
    _set_status(txn, "pool", pool, rolled_up([m["operating_status"] for m in members]))
    lb = txn.get("loadbalancer", pool["loadbalancer_id"])
    if lb is not None:
        pools = [p for p in txn.list("pool") if p.get("loadbalancer_id") == lb["id"]]
        _set_status(txn, "loadbalancer", lb, rolled_up([p["operating_status"] for p in pools]))


def _set_status(txn, kind: str, doc: dict, status: str) -> None:
    if doc["operating_status"] != status:
        doc.update(operating_status=status, revision_number=doc["revision_number"] + 1)
        txn.put(kind, doc)


def delete_children(txn, lb: dict) -> None:
    """Everything under a load balancer (Octavia's cascade delete): listeners, pools, their
    members and health monitors."""
    pools = {p["id"] for p in txn.list("pool") if p.get("loadbalancer_id") == lb["id"]}
    for kind, belongs in (("healthmonitor", lambda d: d["pool_id"] in pools),
                          ("member", lambda d: d["pool_id"] in pools),
                          ("pool", lambda d: d["id"] in pools),
                          ("listener", lambda d: d["loadbalancer_id"] == lb["id"])):
        for doc in txn.list(kind):
            if belongs(doc):
                txn.delete(kind, doc["id"])


# --- provisioning: PENDING_* until an agent has programmed the load balancer ----------

def mark_pending(txn, lb_id: str | None, status: str = "PENDING_UPDATE") -> None:
    """A change under a load balancer: it is PENDING_UPDATE until an agent programmed it."""
    lb = txn.get("loadbalancer", lb_id) if lb_id else None
    if lb is not None and lb["provisioning_status"] != status:
        lb.update(provisioning_status=status, revision_number=lb["revision_number"] + 1)
        txn.put("loadbalancer", lb)


def pool_loadbalancer(txn, pool_id: str) -> str | None:
    pool = txn.get("pool", pool_id)
    return pool.get("loadbalancer_id") if pool else None


def pool_updated(txn, old: dict, new: dict) -> None:
    check_pool(new)
    mark_pending(txn, new.get("loadbalancer_id"))


def member_updated(txn, old: dict, new: dict) -> None:  # weight, admin state: the ring changes
    mark_pending(txn, pool_loadbalancer(txn, new["pool_id"]))


def monitor_updated(txn, old: dict, new: dict) -> None:
    check_healthmonitor(new)
    mark_pending(txn, pool_loadbalancer(txn, new["pool_id"]))


def mark_active(txn, lb_id: str, revision: int) -> None:
    """An agent programmed the load balancer as of `revision`: ACTIVE, unless it changed since."""
    lb = txn.get("loadbalancer", lb_id)
    if lb is not None and lb["revision_number"] == revision and lb["provisioning_status"].startswith("PENDING_"):
        lb.update(provisioning_status="ACTIVE", revision_number=revision + 1)
        txn.put("loadbalancer", lb)
