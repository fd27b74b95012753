"""schemathesis against /openapi.json: generated requests, valid and schema-violating, for
every documented operation, on the ASGI app over a memory store. No 5xx, every status,
content type and body as the document says, and invalid input refused.

The store holds one object of every kind, and about half the generated cases have their
path ids and the references in their bodies (network_id, subnet_id, …) pointed at objects
that exist, so that the checks past the lookups run too, not only the 404s.

Bounded: a fixed number of examples per operation, derandomized (the same cases every run).
/v2.0/lbaas/… repeats /v2/lbaas/… (the same handlers), so only the latter is run."""
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from dfxdp.api.app import create_app
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService

SERVICE = NBService(open_store("memory://"))
APP = create_app(SERVICE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path_regex="^/v2.0/lbaas/")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]

# a reference field of a body -> the kind it names
REFERENCES = {"network_id": "network", "floating_network_id": "network", "subnet_id": "subnet",
              "vip_subnet_id": "subnet", "security_group_id": "security_group", "remote_group_id": "security_group",
              "port_id": "port", "router_id": "router", "loadbalancer_id": "loadbalancer",
              "listener_id": "listener", "pool_id": "pool", "default_pool_id": "pool", "subnetpool_id": "subnetpool",
              "address_scope_id": "address_scope"}
# a collection's URL segment -> its kind
KINDS = {"networks": "network", "subnets": "subnet", "subnetpools": "subnetpool", "address-scopes": "address_scope",
         "ports": "port",
         "routers": "router", "security-groups": "security_group", "security-group-rules": "security_group_rule",
         "floatingips": "floatingip", "loadbalancers": "loadbalancer", "listeners": "listener", "pools": "pool",
         "members": "member", "healthmonitors": "healthmonitor"}


def _seed() -> None:
    """One object of every kind, linked as a deployment links them."""
    ext = SERVICE.create("network", {"name": "ext", "router:external": True})
    SERVICE.create("subnet", {"network_id": ext["id"], "cidr": "198.51.100.0/24"})
    net = SERVICE.create("network", {"name": "net"})
    scope = SERVICE.create("address_scope", {"name": "scope", "ip_version": 4})
    SERVICE.create("subnetpool", {"name": "pool", "prefixes": ["10.200.0.0/16"], "default_prefixlen": 24,
                                  "address_scope_id": scope["id"]})
    subnet = SERVICE.create("subnet", {"network_id": net["id"], "cidr": "10.20.0.0/24"})
    router = SERVICE.create("router", {"external_gateway_info": {"network_id": ext["id"]}})
    SERVICE.add_router_interface(router["id"], {"subnet_id": subnet["id"]})
    port = SERVICE.create("port", {"network_id": net["id"]})
    SERVICE.create("floatingip", {"floating_network_id": ext["id"], "port_id": port["id"]})
    sg = SERVICE.create("security_group", {"name": "web"})
    SERVICE.create("security_group_rule", {"security_group_id": sg["id"], "direction": "ingress",
                                           "protocol": "tcp", "port_range_min": 80, "port_range_max": 80})
    lb = SERVICE.create("loadbalancer", {"vip_subnet_id": subnet["id"]})
    listener = SERVICE.create("listener", {"loadbalancer_id": lb["id"], "protocol": "TCP", "protocol_port": 80})
    pool = SERVICE.create("pool", {"listener_id": listener["id"], "protocol": "TCP", "lb_algorithm": "ROUND_ROBIN"})
    SERVICE.create("member", {"pool_id": pool["id"], "address": "10.20.0.50", "protocol_port": 8080})
    SERVICE.create("healthmonitor", {"pool_id": pool["id"], "type": "TCP", "delay": 5, "timeout": 3,
                                     "max_retries": 3})


_seed()


def _existing(kind: str) -> str | None:
    """An object of `kind` that exists now (cases delete some)."""
    docs = SERVICE.list(kind)
    return docs[0]["id"] if docs else None


def _point_at_existing(value):
    """References in a body, at any depth, pointed at existing objects."""
    if isinstance(value, dict):
        return {k: (_existing(REFERENCES[k]) or v) if k in REFERENCES and isinstance(v, str)
                else _point_at_existing(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_point_at_existing(v) for v in value]
    return value


def _with_existing_objects(case):
    segments = case.operation.path.strip("/").split("/")
    params = dict(case.path_parameters or {})
    for name, value in params.items():
        if not isinstance(value, str):
            continue
        if name == "parent_id" or name == "router_id":
            params[name] = _existing("pool" if name == "parent_id" else "router") or value
        elif name == "obj_id":
            params[name] = _existing(KINDS[segments[segments.index("{obj_id}") - 1]]) or value
    case.path_parameters = params
    case.body = _point_at_existing(case.body)
    return case


@schema.hook
def flatmap_case(context, case):
    return st.booleans().map(lambda existing: _with_existing_objects(case) if existing else case)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(checks=CHECKS)
