"""The NB service: every validation and every write of the northbound model.

The REST API and the agents call this; it stores each object as JSON at
/dfxdp/nb/<kind>/<id> (see docs/api.md) through optimistic transactions
(dfxdp/nb/txn.py): a rejected request changes nothing. What is generic to every
kind (server-owned fields, immutable ones, ids, keys, timestamps, filters) is
here; what each kind checks and writes besides is its family's
(dfxdp/nb/families/), called inside the same transaction.
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Callable

from pydantic import ValidationError

from . import dns, layout, tags
from .db.base import Store, StoreError
from .errors import BadRequest, NotFound, not_found
from .families.address_scopes import AddressScopes
from .families.base import Hooks
from .families.chassis import Chassis
from .families.loadbalancers import LoadBalancers
from .families.networks import Networks
from .families.ports import Ports
from .families.routers import Routers
from .families.security_groups import SecurityGroups
from .families.subnetpools import SubnetPools
from .kinds import MODELS
from .mirror import Mirror, order_key
from .model import DEFAULT_PROJECT
from .quotas import Quotas
from .txn import KeyAllocator, Txn, now, run_txn

log = logging.getLogger(__name__)

KEY_LIMITS = {"network": 1 << 24}  # a network key is its VXLAN VNI
DEFAULT_KEY_LIMIT = 1 << 31
# Neutron makes sure a project has its default group when it creates these
NEEDS_DEFAULT_GROUP = {"network", "port", "security_group"}
IP_SUBSTRING = "ip_address_substr"  # Neutron's ip-substring-filtering in fixed_ips filters


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class NBService:
    def __init__(self, store: Store, default_project: str = DEFAULT_PROJECT, dns_domain: str = dns.DEFAULT_DOMAIN,
                 quota_defaults: dict[str, int] | None = None, mirror: bool = False):
        self.store = store
        try:  # a store from an older version gets what this one's reads rely on, before any request
            layout.ensure(store)
        except StoreError as exc:  # unreachable: requests answer 503 meanwhile, the first write upgrades
            log.warning("NB store not upgraded at start: %s", exc)
        self.quotas = Quotas(store, quota_defaults)
        self.default_project = default_project
        dns.check_domain(dns_domain)
        self.dns_domain = dns_domain  # the server-wide default of networks' dns_domain
        self.keys = KeyAllocator()
        self.networks = Networks(self)
        self.ports = Ports(self)
        self.routers = Routers(self)
        self.security_groups = SecurityGroups(self)
        self.loadbalancers = LoadBalancers(self)
        self.chassis = Chassis(self)
        self.subnetpools = SubnetPools(self)
        self.address_scopes = AddressScopes(self)
        self._hooks: dict[str, Hooks] = {}
        for family in (self.networks, self.ports, self.routers, self.security_groups, self.loadbalancers,
                       self.subnetpools, self.address_scopes):
            self._hooks.update(family.hooks())
        # an API server lists from a watched copy of the NB objects (dfxdp/nb/mirror.py)
        shown_from = {kind: hooks.shown_from for kind, hooks in self._hooks.items()}
        self.mirror = Mirror(store, self._decorate, shown_from) if mirror else None

    # ------------------------------------------------------------------ shared by the families
    def _model(self, kind: str):
        if kind not in MODELS:
            raise NotFound("ResourceNotFound", f"unknown resource type {kind}")
        return MODELS[kind]

    def validate(self, kind: str, doc: dict) -> dict:
        """The document as the kind's model takes it (a 400 naming each bad field)."""
        try:
            return self._model(kind).model_validate(doc).model_dump(by_alias=True)
        except ValidationError as exc:
            raise BadRequest("HTTPBadRequest", f"Invalid input for {kind}: {_validation_message(exc)}") from None

    def new_key(self, txn: Txn, kind: str) -> int:
        """A datapath key for a new object of `kind`."""
        return self.keys.next(txn, kind, KEY_LIMITS.get(kind, DEFAULT_KEY_LIMIT))

    def child(self, txn: Txn, kind: str, fields: dict, project: str) -> dict:
        """An object created on behalf of another (gateway ports, VIP ports, default groups …)."""
        doc = self.validate(kind, {**fields, "project_id": project})
        doc.update(id=str(uuid.uuid4()), created_at=now(), updated_at=now(), revision_number=1,
                   key=self.new_key(txn, kind))
        if kind == "port":  # its addresses and reservations; a child group or rule needs none of its own checks
            self.ports.create(txn, doc)
        txn.put(kind, doc)
        return doc

    # ------------------------------------------------------------------ generic CRUD
    def get(self, kind: str, obj_id: str) -> dict:
        self._model(kind)
        doc = Txn(self.store).get(kind, obj_id)
        if doc is None:
            raise not_found(kind, obj_id)
        return self._decorate(kind, [doc])[0]

    def list(self, kind: str, filters: dict[str, list[str]] | None = None,
             cut: Callable[[list[dict]], list[dict]] | None = None, shared: bool = False) -> list[dict]:
        """Objects of a kind (copies: callers may change them). Reading makes no project's
        default group (the API's listing of groups does). `cut` picks what to return of the
        filtered list (a page) before anything is copied; `shared`: no copies, for a caller
        that only reads them (a list answer: 100,000 copies cost it half a second)."""
        self._model(kind)

        docs = self.mirror.list(kind) if self.mirror else None  # shared: copied below
        if docs is None:  # derived fields filled, in the stored order
            docs = sorted(self._decorate(kind, Txn(self.store).list(kind)), key=order_key)
        for field, wanted in (filters or {}).items():
            if field in tags.FILTERS:
                docs = [d for d in docs if tags.matches(d, field, wanted)]
            else:
                docs = [d for d in docs if _matches(d.get(field), wanted)]
        docs = cut(docs) if cut else docs
        return docs if shared else [dict(doc) for doc in docs]

    def _decorate(self, kind: str, docs: list[dict]) -> list[dict]:
        """Fill fields derived from other objects (Neutron shows them, we do not store them)."""
        hooks = self._hooks.get(kind)
        if hooks and hooks.decorate and docs:
            hooks.decorate(docs)
        for doc in docs:
            if "project_id" in doc:
                doc["tenant_id"] = doc["project_id"]
            doc.setdefault("tags", [])  # stored before tags existed
        return docs

    def create(self, kind: str, body: dict, project_id: str | None = None, enforce_quota: bool = False) -> dict:
        return self.create_many(kind, [body], project_id, enforce_quota)[0]

    def create_many(self, kind: str, bodies: list[dict], project_id: str | None = None,
                    enforce_quota: bool = False) -> list[dict]:
        """Neutron's bulk create: every object or none, in one NB transaction (each checked
        against the store and the ones before it, as if created one after the other). With
        enforce_quota (the API's creates, as Neutron's API enforces them), each project's
        quota must hold the whole bulk."""
        docs = [self._new_document(kind, body, project_id) for body in bodies]
        per_project: dict[str, int] = {}
        for doc in docs:
            per_project[doc["project_id"]] = per_project.get(doc["project_id"], 0) + 1

        def body_fn(txn: Txn) -> list[dict]:
            for project, count in per_project.items() if enforce_quota else ():
                self.quotas.check(txn, kind, project, count)
            return [self._insert(txn, kind, doc) for doc in docs]

        return self._decorate(kind, run_txn(self.store, body_fn))

    def _new_document(self, kind: str, body: dict, project_id: str | None) -> dict:
        """A create's body checked on its own (no store read): the model's fields and types."""
        model = self._model(kind)
        body = dict(body)
        project = body.pop("tenant_id", None) or body.get("project_id") or project_id or self.default_project
        # tags may come with the object (stored in the same transaction), never in an update
        new_tags = tags.check_count(kind + "s", tags.check_tags(body.pop("tags"))) if "tags" in body else []
        owned = sorted(set(body) & model.SERVER_OWNED)
        if owned:
            raise BadRequest("HTTPBadRequest", f"Attribute(s) {', '.join(owned)} cannot be set by a client")
        return {**self.validate(kind, {**body, "project_id": project}), "tags": new_tags}

    def _insert(self, txn: Txn, kind: str, doc: dict) -> dict:
        # hooks fill nested fields; a retried transaction starts anew (a JSON document: copied
        # through JSON, several times faster than deepcopy in a bulk of thousands)
        new = json.loads(json.dumps(doc))
        new["id"] = str(uuid.uuid4())
        new["created_at"] = new["updated_at"] = now()
        new["revision_number"] = 1
        new["key"] = self.new_key(txn, kind)
        if kind in NEEDS_DEFAULT_GROUP:
            self.security_groups.default_group(txn, new["project_id"])
        hooks = self._hooks.get(kind)
        if hooks and hooks.create:
            hooks.create(txn, new)
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
            new = self.validate(kind, {**old, **body})
            new["revision_number"] = old["revision_number"] + 1
            new["updated_at"] = now()
            hooks = self._hooks.get(kind)
            if hooks and hooks.update:
                hooks.update(txn, old, new)
            txn.put(kind, new)
            return new

        return self._decorate(kind, [run_txn(self.store, body_fn)])[0]

    def set_tags(self, kind: str, obj_id: str, change: Callable[[list[str]], list[str]]) -> list[str]:
        """An object's tags replaced by change(its tags), its revision bumped (standard-attr-tag)."""
        self._model(kind)

        def body_fn(txn: Txn) -> list[str]:
            doc = txn.require(kind, obj_id)
            new_tags = change(list(doc.get("tags") or []))
            if new_tags != doc.get("tags"):
                doc.update(tags=new_tags, revision_number=doc["revision_number"] + 1, updated_at=now())
                txn.put(kind, doc)
            return new_tags

        return run_txn(self.store, body_fn)

    def delete(self, kind: str, obj_id: str) -> None:
        self._model(kind)

        def body_fn(txn: Txn) -> None:
            old = txn.get(kind, obj_id)
            if old is None:
                raise not_found(kind, obj_id)
            hooks = self._hooks.get(kind)
            if hooks and hooks.delete:
                hooks.delete(txn, old)
            txn.delete(kind, obj_id)

        run_txn(self.store, body_fn)

    # ------------------------------------------------------------------ family actions, as the API and agents call them
    def ensure_default_security_group(self, project: str | None = None) -> str:
        return self.security_groups.ensure_default(project or self.default_project)

    def add_router_interface(self, router_id: str, body: dict) -> dict:
        return self.routers.add_interface(router_id, body)

    def remove_router_interface(self, router_id: str, body: dict) -> dict:
        return self.routers.remove_interface(router_id, body)

    def delete_loadbalancer(self, lb_id: str, cascade: bool = False) -> None:
        self.loadbalancers.delete(lb_id, cascade)

    def set_loadbalancer_active(self, lb_id: str, revision: int) -> None:
        self.loadbalancers.set_active(lb_id, revision)

    def set_member_status(self, member_id: str, status: str) -> None:
        self.loadbalancers.set_member_status(member_id, status)

    def upsert_chassis(self, name: str, tunnel_ip: str, **attrs: Any) -> dict:
        return self.chassis.upsert(name, tunnel_ip, **attrs)

    def heartbeat(self, name: str) -> dict:
        return self.chassis.heartbeat(name)

    def set_chassis_facts(self, name: str, **facts: Any) -> dict:
        return self.chassis.set_facts(name, **facts)

    def set_port_status(self, port_id: str, status: str) -> dict:
        return self.ports.set_status(port_id, status)


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
    for (any of the values given for that key); `ip_address_substr=S` (ip-substring-filtering)
    asks for an ip_address containing S."""
    by_key: dict[str, set[str]] = {}
    for item in wanted:
        key, sep, value = item.partition("=")
        if not sep:
            return False
        by_key.setdefault(key, set()).add(value)

    def has(item: dict, key: str, values: set[str]) -> bool:
        if key == IP_SUBSTRING:
            return any(v in str(item.get("ip_address")) for v in values)
        return str(item.get(key)) in values

    return any(all(has(it, k, values) for k, values in by_key.items()) for it in items)
