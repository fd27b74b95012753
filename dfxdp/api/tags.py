"""The tag sub-resource of every standard resource (Neutron's standard-attr-tag):

    GET    /v2.0/<collection>/<id>/tags          {"tags": [...]}
    PUT    /v2.0/<collection>/<id>/tags          replace them all: body {"tags": [...]}, answer the same
    POST   /v2.0/<collection>/<id>/tags          add these (tag-creation): body {"tags": [...]}, answer the same
    DELETE /v2.0/<collection>/<id>/tags          remove them all (204)
    GET    /v2.0/<collection>/<id>/tags/<tag>    204 if the object has it, else 404 TagNotFound
    PUT    /v2.0/<collection>/<id>/tags/<tag>    add it (201, no body)
    DELETE /v2.0/<collection>/<id>/tags/<tag>    remove it (204; 404 TagNotFound if absent)

Reading tags needs the object to be visible to the request, changing them the right to update
it (dfxdp/api/scope.py), as Neutron's policy for tags follows the parent resource's.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from dfxdp.nb import tags
from dfxdp.nb.service import NBService

from . import body, errors, scope


def _added(tag: str):
    return lambda current: current if tag in current else [*current, tag]


def _removed(tag: str):
    def change(current: list[str]) -> list[str]:
        if tag not in current:
            raise tags.not_found(tag)
        return [t for t in current if t != tag]
    return change


def _added_all(new: list[str]):
    return lambda current: current + [t for t in new if t not in current]


def install(app: FastAPI, service: NBService, base: str, kind: str) -> None:
    """The tag routes under `base` (a collection's path) for objects of `kind`."""
    collection = kind + "s"  # how Neutron's errors name the resource

    def visible(request: Request, obj_id: str, change: bool) -> dict:
        doc = service.get(kind, obj_id)
        ctx = scope.context(request)
        if change:
            scope.check_change(ctx, kind, doc, service.list, "update")
        return scope.check_show(ctx, kind, doc, service.list)

    def set_tags(request: Request, obj_id: str, change) -> list[str]:
        visible(request, obj_id, True)
        return service.set_tags(kind, obj_id, lambda current: tags.check_count(collection, change(current)))

    async def list_tags(obj_id: str, request: Request):
        doc = await run_in_threadpool(visible, request, obj_id, False)
        return {"tags": doc["tags"]}

    async def replace_tags(obj_id: str, request: Request):
        new = tags.check_tags_body(await body.read_json(request))
        return {"tags": await run_in_threadpool(set_tags, request, obj_id, lambda _current: new)}

    async def add_all(obj_id: str, request: Request):
        new = tags.check_tags_body(await body.read_json(request))
        await run_in_threadpool(set_tags, request, obj_id, _added_all(new))
        return {"tags": new}  # Neutron answers the tags asked for (200)

    async def remove_all(obj_id: str, request: Request):
        await run_in_threadpool(set_tags, request, obj_id, lambda _current: [])
        return Response(status_code=204)

    async def check(obj_id: str, tag: str, request: Request):
        tags.check_tag(tag)
        doc = await run_in_threadpool(visible, request, obj_id, False)
        if tag not in doc["tags"]:
            raise tags.not_found(tag)
        return Response(status_code=204)

    async def add(obj_id: str, tag: str, request: Request):
        await run_in_threadpool(set_tags, request, obj_id, _added(tags.check_tag(tag)))
        return Response(status_code=201)

    async def remove(obj_id: str, tag: str, request: Request):
        await run_in_threadpool(set_tags, request, obj_id, _removed(tags.check_tag(tag)))
        return Response(status_code=204)

    for path, endpoint, method in ((base + "/{obj_id}/tags", list_tags, "GET"),
                                   (base + "/{obj_id}/tags", replace_tags, "PUT"),
                                   (base + "/{obj_id}/tags", add_all, "POST"),
                                   (base + "/{obj_id}/tags", remove_all, "DELETE"),
                                   (base + "/{obj_id}/tags/{tag}", check, "GET"),
                                   (base + "/{obj_id}/tags/{tag}", add, "PUT"),
                                   (base + "/{obj_id}/tags/{tag}", remove, "DELETE")):
        app.add_api_route(path, endpoint, methods=[method], include_in_schema=False,
                          response_class=errors.NeutronJSON)
