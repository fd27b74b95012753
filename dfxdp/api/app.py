"""The Neutron API v2.0 (and Octavia v2 for load balancers) over the NB service.

Thin on purpose: check and parse the request (dfxdp/api/body.py), call NBService,
shape the answer (lists: dfxdp/api/listing.py). All validation of objects lives in
the NB (dfxdp/nb/); every error leaves as Neutron's {"NeutronError": {"type",
"message", "detail"}} with its HTTP status (dfxdp/api/errors.py). /openapi.json
describes it all (dfxdp/api/openapi.py).
"""
from __future__ import annotations

import functools
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from dfxdp.metrics.api import instrument
from dfxdp.nb import kinds
from dfxdp.nb.errors import BadRequest, NBError, NotFound
from dfxdp.nb.kinds import API_PREFIX, NEUTRON, OCTAVIA, Kind
from dfxdp.nb.service import NBService

from . import agents, body, errors, extensions, listing, openapi, quotas, references, scope, tags
from .auth import Authenticator
from .policy import Policy
from .errors import OCTAVIA_PREFIXES

NEUTRON_PREFIX = API_PREFIX[NEUTRON]


def _served(api: str) -> list[Kind]:
    return [kind for kind in kinds.KINDS if kind.collection and kind.api == api]


def _collection_path(prefix: str, kind: Kind) -> str:
    """Where a kind's collection is: under its parent's objects for a nested one."""
    if kind.parent is None:
        return f"{prefix}/{kind.collection}"
    parent = kinds.BY_NAME[kind.parent[0]]
    return f"{prefix}/{parent.collection}/{{parent_id}}/{kind.collection}"


def create_app(service: NBService, auth: Authenticator | None = None, policy: Policy | None = None) -> FastAPI:
    """The API; `auth` checks each request's credentials (dfxdp/api/auth.py), None: nobody's;
    `policy` what each may do (dfxdp/api/policy.py), Neutron's defaults unless given."""
    app = FastAPI(title="dfxdp Neutron API", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=errors.NeutronJSON)
    app.state.service = service
    app.state.policy = policy or Policy()

    instrument(app)
    errors.install(app)

    app.add_middleware(_Checks, auth=auth)  # outside the metrics: a refused request is not counted

    @app.get("/", include_in_schema=False)
    async def versions(request: Request):
        base = str(request.base_url).rstrip("/")
        return {"versions": [{"id": "v2.0", "status": "CURRENT",
                              "links": [{"href": f"{base}/v2.0/", "rel": "self"}]}]}

    @app.get("/v2", include_in_schema=False)
    @app.get("/v2/", include_in_schema=False)
    async def octavia_version(request: Request):
        """Octavia's version document, where openstacksdk's load_balancer proxy discovers v2."""
        base = str(request.base_url).rstrip("/")
        return {"version": {"id": "v2.0", "status": "CURRENT", "links": [{"href": f"{base}/v2/", "rel": "self"}]}}

    @app.get(NEUTRON_PREFIX, include_in_schema=False)
    @app.get(NEUTRON_PREFIX + "/", include_in_schema=False)
    async def resources(request: Request):
        base = str(request.base_url).rstrip("/")
        return {"resources": [{"name": k.name, "collection": k.plural,
                               "links": [{"href": f"{base}{NEUTRON_PREFIX}/{k.collection}", "rel": "self"}]}
                              for k in _served(NEUTRON)]}

    @app.get(NEUTRON_PREFIX + "/extensions", include_in_schema=False)
    async def list_extensions():
        return extensions.listing()

    @app.get(NEUTRON_PREFIX + "/extensions/{alias}", include_in_schema=False)
    async def show_extension(alias: str):
        return extensions.show(alias)

    agents.install(app, service, NEUTRON_PREFIX)
    quotas.install(app, service, NEUTRON_PREFIX)

    collections = [(_collection_path(NEUTRON_PREFIX, k), k) for k in _served(NEUTRON)]
    for prefix in OCTAVIA_PREFIXES:
        @app.delete(prefix + "/loadbalancers/{lb_id}", status_code=204, include_in_schema=False)
        async def delete_loadbalancer(lb_id: str, cascade: bool = False):
            """Octavia's `?cascade=true`: the load balancer with everything under it, in one transaction."""
            await run_in_threadpool(service.delete_loadbalancer, lb_id, cascade)
            return Response(status_code=204)

        collections += [(_collection_path(prefix, k), k) for k in _served(OCTAVIA)]
    for base, kind in collections:
        _crud_routes(app, service, base, kind)
    for kind in _served(NEUTRON):
        tags.install(app, service, _collection_path(NEUTRON_PREFIX, kind), kind.name)

    def router_action(request: Request, router_id: str, action: Callable[[str, dict], dict], obj: dict,
                      adding: bool) -> dict:
        ctx = scope.context(request)
        scope.check_change(ctx, "router", service.get("router", router_id), service.list, "update")
        references.check_interface(ctx, obj, service.list, adding)
        return action(router_id, obj)

    @app.put(NEUTRON_PREFIX + "/routers/{router_id}/add_router_interface", include_in_schema=False)
    async def add_interface(router_id: str, request: Request):
        return await run_in_threadpool(router_action, request, router_id, service.add_router_interface,
                                       await body.json_object(request), True)

    @app.put(NEUTRON_PREFIX + "/routers/{router_id}/remove_router_interface", include_in_schema=False)
    async def remove_interface(router_id: str, request: Request):
        return await run_in_threadpool(router_action, request, router_id, service.remove_router_interface,
                                       await body.json_object(request), False)

    document = openapi.build([(base, kind.name, kind.plural, kind.model, kind.parent and kind.parent[1])
                              for base, kind in collections], NEUTRON_PREFIX)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document():
        return document

    return app


class _Checks:
    """Before any route: the credentials (`auth`) and the request's declared sizes. Pure ASGI (not
    Starlette's BaseHTTPMiddleware, which costs a task and a wrapped response stream per request)."""

    def __init__(self, app, auth: Authenticator | None):
        self.app, self.auth = app, auth

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            refused = self.auth and await self.auth(request)
            if not refused:
                try:
                    body.check_request(request)
                except NBError as exc:
                    refused = errors.error_response(exc)
            if refused:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _check_project(obj: dict) -> None:
    """Neutron's populate_project_info: tenant_id is project_id's old name, a string, and both
    must agree."""
    if "tenant_id" in obj and not isinstance(obj["tenant_id"], str):
        raise BadRequest("HTTPBadRequest", f"Invalid input for tenant_id. Reason: '{obj['tenant_id']}' is not a "
                                           f"valid string.")
    if "tenant_id" in obj and "project_id" in obj and obj["tenant_id"] != obj["project_id"]:
        raise BadRequest("HTTPBadRequest", "'project_id' and 'tenant_id' do not match")


def _crud_routes(app: FastAPI, service: NBService, base: str, kind: Kind) -> None:
    """GET/POST on the collection, GET/PUT/DELETE on one object."""
    parent_kind, parent_field = kind.parent or (None, None)
    bulk_plural = kind.plural if kind.api == NEUTRON else None  # Neutron's bulk create; not Octavia's

    def check_parent(doc: dict, parent_id: str | None) -> dict:
        if parent_field and doc.get(parent_field) != parent_id:
            raise NotFound(f"{kind.name.capitalize()}NotFound", f"{kind.name} {doc['id']} is not in {parent_id}")
        return doc

    async def list_(request: Request, parent_id: str | None = None):
        query = listing.parse(request, kind.model)
        if parent_field:
            await run_in_threadpool(service.get, parent_kind, parent_id)
            query.filters[parent_field] = [parent_id]
        ctx = scope.context(request)
        # the objects are read, never changed, here: shared with the server's copy, not copied;
        # a page of the stored order is cut first (a page of 100,000 ports in milliseconds), a
        # page of what the request may see, or sorted otherwise, after
        paged_first = ctx.unrestricted and not query.sorts

        def visible_docs() -> list[dict]:
            if kind.name == "security_group":  # Neutron: a project's listing shows its default group
                asked = query.filters.get("project_id") or query.filters.get("tenant_id") or [ctx.project]
                service.ensure_default_security_group(asked[0] or None)
            cut = (lambda found: listing.paginate(found, query, kind.name)) if paged_first else None
            found = service.list(kind.name, query.filters, cut, shared=True)
            return scope.visible(ctx, kind.name, found, service.list)

        docs = listing.sort(await run_in_threadpool(visible_docs), query.sorts)
        page = docs if paged_first else listing.paginate(docs, query, kind.name)
        links = listing.links(request, page, query)
        # joined from objects the server's copy keeps rendered (not FastAPI's encoder, which would
        # walk every value of a large list first)
        body = await run_in_threadpool(listing.answer, kind.plural, page, query.fields, links)
        return Response(body, media_type="application/json")

    async def create(request: Request, parent_id: str | None = None):
        objs, bulk = await body.envelopes(request, kind.name, bulk_plural)
        ctx = scope.context(request)
        for obj in objs:
            _check_project(obj)
        if parent_field:
            objs = [{**obj, parent_field: parent_id} for obj in objs]

        lookup = functools.cache(service.list)  # each kind read once for all of a bulk's objects

        def checked(obj: dict) -> dict:
            obj = scope.check_create(ctx, kind.name, obj, lookup)
            references.check(ctx, kind.name, obj, obj, lookup)
            return obj

        def check_and_create() -> list[dict]:  # one hop to a worker thread, not two
            return service.create_many(kind.name, [checked(obj) for obj in objs], None, True)

        made = [scope.shown(ctx, kind.name, doc) for doc in await run_in_threadpool(check_and_create)]
        return errors.NeutronJSON({kind.plural: made} if bulk else {kind.name: made[0]}, status_code=201)

    def visible_one(request: Request, obj_id: str, parent_id: str | None, action: str | None = None,
                    changes: dict | None = None) -> dict:
        """The object if the request may see it (and, for an action, change it so)."""
        doc = check_parent(service.get(kind.name, obj_id), parent_id)
        ctx = scope.context(request)
        if action:
            scope.check_change(ctx, kind.name, doc, service.list, action, changes)
        if changes:
            references.check(ctx, kind.name, changes, {**doc, **changes}, service.list, doc)
        return scope.check_show(ctx, kind.name, doc, service.list)

    async def show(obj_id: str, request: Request, parent_id: str | None = None):
        doc = await run_in_threadpool(visible_one, request, obj_id, parent_id)
        return {kind.name: listing.select(doc, request.query_params.getlist("fields"))}

    async def update(obj_id: str, request: Request, parent_id: str | None = None):
        obj = await body.envelope(request, kind.name)
        await run_in_threadpool(visible_one, request, obj_id, parent_id, "update", obj)
        updated = await run_in_threadpool(service.update, kind.name, obj_id, obj)
        return {kind.name: scope.shown(scope.context(request), kind.name, updated)}

    async def delete(obj_id: str, request: Request, parent_id: str | None = None):
        await run_in_threadpool(visible_one, request, obj_id, parent_id, "delete")
        await run_in_threadpool(service.delete, kind.name, obj_id)
        return Response(status_code=204)

    app.add_api_route(base, list_, methods=["GET"], include_in_schema=False)
    app.add_api_route(base, create, methods=["POST"], include_in_schema=False)
    app.add_api_route(base + "/{obj_id}", show, methods=["GET"], include_in_schema=False)
    app.add_api_route(base + "/{obj_id}", update, methods=["PUT"], include_in_schema=False)
    app.add_api_route(base + "/{obj_id}", delete, methods=["DELETE"], include_in_schema=False)
