"""The Neutron API v2.0 (and Octavia v2 for load balancers) over the NB service.

Thin on purpose: parse the JSON envelope, call NBService, shape the answer.
All validation lives in dfxdp/nb/service.py; every error leaves as Neutron's
{"NeutronError": {"type", "message", "detail"}} with its HTTP status.
"""
from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from dfxdp.metrics.api import instrument
from dfxdp.nb.errors import BadRequest, NBError, NotFound, Unauthorized
from dfxdp.nb.service import NBService

NEUTRON = "/v2.0"
OCTAVIA_PREFIXES = ("/v2/lbaas", "/v2.0/lbaas")
QUERY_NOT_FILTERS = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"}


@dataclass(frozen=True)
class Collection:
    path: str      # URL segment
    kind: str      # NB kind (key segment)
    singular: str  # JSON envelope of one object
    plural: str    # JSON envelope of a list


NEUTRON_COLLECTIONS = [
    Collection("networks", "network", "network", "networks"),
    Collection("subnets", "subnet", "subnet", "subnets"),
    Collection("ports", "port", "port", "ports"),
    Collection("routers", "router", "router", "routers"),
    Collection("security-groups", "security_group", "security_group", "security_groups"),
    Collection("security-group-rules", "security_group_rule", "security_group_rule", "security_group_rules"),
    Collection("floatingips", "floatingip", "floatingip", "floatingips"),
]
OCTAVIA_COLLECTIONS = [
    Collection("loadbalancers", "loadbalancer", "loadbalancer", "loadbalancers"),
    Collection("listeners", "listener", "listener", "listeners"),
    Collection("pools", "pool", "pool", "pools"),
    Collection("healthmonitors", "healthmonitor", "healthmonitor", "healthmonitors"),
]
MEMBERS = Collection("members", "member", "member", "members")


def _error(exc: NBError) -> JSONResponse:
    return JSONResponse(exc.to_neutron(), status_code=exc.status)


async def _envelope(request: Request, name: str, required: bool = True) -> dict:
    """The object inside {"<name>": {...}}; a malformed body is a 400, not a 500."""
    raw = await request.body()
    if not raw:
        if required:
            raise BadRequest("HTTPBadRequest", f"Request body with a '{name}' object is required")
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("MalformedRequestBody", "Malformed request body: not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get(name), dict):
        raise BadRequest("HTTPBadRequest", f"Request body must be a JSON object with a '{name}' object")
    return body[name]


def _filters(request: Request) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key not in QUERY_NOT_FILTERS:
            filters.setdefault("project_id" if key == "tenant_id" else key, []).append(value)
    return filters


def _select(doc: dict, fields: list[str]) -> dict:
    return {k: v for k, v in doc.items() if k in fields} if fields else doc


def create_app(service: NBService, auth_token: str | None = None) -> FastAPI:
    app = FastAPI(title="dfxdp Neutron API", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    instrument(app)

    @app.middleware("http")
    async def token_auth(request: Request, call_next):
        if auth_token is not None and request.url.path != "/metrics":  # Prometheus scrapes without a token
            given = request.headers.get("x-auth-token", "")
            if not hmac.compare_digest(given.encode(), auth_token.encode()):
                return _error(Unauthorized("Unauthorized", "Authentication required: missing or wrong X-Auth-Token"))
        return await call_next(request)

    @app.exception_handler(NBError)
    async def nb_error(request: Request, exc: NBError):
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = "HTTPNotFound" if exc.status_code == 404 else "HTTPMethodNotAllowed" if exc.status_code == 405 else "HTTPError"
        return JSONResponse({"NeutronError": {"type": kind, "message": f"{exc.detail}: {request.url.path}",
                                              "detail": ""}}, status_code=exc.status_code)

    @app.get("/")
    async def versions(request: Request):
        base = str(request.base_url).rstrip("/")
        return {"versions": [{"id": "v2.0", "status": "CURRENT",
                              "links": [{"href": f"{base}/v2.0/", "rel": "self"}]}]}

    @app.get("/v2")
    @app.get("/v2/")
    async def octavia_version(request: Request):
        """Octavia's version document, where openstacksdk's load_balancer proxy discovers v2."""
        base = str(request.base_url).rstrip("/")
        return {"version": {"id": "v2.0", "status": "CURRENT", "links": [{"href": f"{base}/v2/", "rel": "self"}]}}

    @app.get(NEUTRON)
    @app.get(NEUTRON + "/")
    async def resources(request: Request):
        base = str(request.base_url).rstrip("/")
        return {"resources": [{"name": c.singular, "collection": c.plural,
                               "links": [{"href": f"{base}{NEUTRON}/{c.path}", "rel": "self"}]}
                              for c in NEUTRON_COLLECTIONS]}

    for prefix in [NEUTRON]:
        for coll in NEUTRON_COLLECTIONS:
            _crud_routes(app, service, f"{prefix}/{coll.path}", coll)
    for prefix in OCTAVIA_PREFIXES:
        for coll in OCTAVIA_COLLECTIONS:
            _crud_routes(app, service, f"{prefix}/{coll.path}", coll)
        _crud_routes(app, service, prefix + "/pools/{parent_id}/members", MEMBERS, parent_field="pool_id")

    @app.put(NEUTRON + "/routers/{router_id}/add_router_interface")
    async def add_interface(router_id: str, request: Request):
        return await run_in_threadpool(service.add_router_interface, router_id, await _json_object(request))

    @app.put(NEUTRON + "/routers/{router_id}/remove_router_interface")
    async def remove_interface(router_id: str, request: Request):
        return await run_in_threadpool(service.remove_router_interface, router_id, await _json_object(request))

    return app


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise BadRequest("MalformedRequestBody", "Malformed request body: not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("HTTPBadRequest", "Request body must be a JSON object")
    return body


def _crud_routes(app: FastAPI, service: NBService, base: str, coll: Collection,
                 parent_field: str | None = None) -> None:
    """GET/POST on the collection, GET/PUT/DELETE on one object."""

    def check_parent(doc: dict, parent_id: str | None) -> dict:
        if parent_field and doc.get(parent_field) != parent_id:
            raise NotFound(f"{coll.singular.capitalize()}NotFound", f"{coll.singular} {doc['id']} is not in {parent_id}")
        return doc

    async def list_(request: Request, parent_id: str | None = None):
        filters = _filters(request)
        if parent_field:
            await run_in_threadpool(service.get, "pool", parent_id)
            filters[parent_field] = [parent_id]
        fields = request.query_params.getlist("fields")
        return {coll.plural: [_select(d, fields) for d in await run_in_threadpool(service.list, coll.kind, filters)]}

    async def create(request: Request, parent_id: str | None = None):
        body = await _envelope(request, coll.singular)
        if parent_field:
            body = {**body, parent_field: parent_id}
        return JSONResponse({coll.singular: await run_in_threadpool(service.create, coll.kind, body)}, status_code=201)

    async def show(obj_id: str, request: Request, parent_id: str | None = None):
        doc = check_parent(await run_in_threadpool(service.get, coll.kind, obj_id), parent_id)
        return {coll.singular: _select(doc, request.query_params.getlist("fields"))}

    async def update(obj_id: str, request: Request, parent_id: str | None = None):
        check_parent(await run_in_threadpool(service.get, coll.kind, obj_id), parent_id)
        body = await _envelope(request, coll.singular)
        return {coll.singular: await run_in_threadpool(service.update, coll.kind, obj_id, body)}

    async def delete(obj_id: str, parent_id: str | None = None):
        check_parent(await run_in_threadpool(service.get, coll.kind, obj_id), parent_id)
        await run_in_threadpool(service.delete, coll.kind, obj_id)
        return Response(status_code=204)

    app.add_api_route(base, list_, methods=["GET"])
    app.add_api_route(base, create, methods=["POST"])
    app.add_api_route(base + "/{obj_id}", show, methods=["GET"])
    app.add_api_route(base + "/{obj_id}", update, methods=["PUT"])
    app.add_api_route(base + "/{obj_id}", delete, methods=["DELETE"])
