"""/openapi.json: the Neutron and Octavia shapes this server implements, from the NB models.

Per collection: the list (filters on every scalar attribute, fields, sorting, pagination
and `<collection>_links`), create (the model less the server-owned attributes), show,
update (less the immutable ones too) and delete; every error a NeutronError with the
statuses the server answers. Response objects list no required attribute: `fields=`
may leave any of them out.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dfxdp.nb import tags
from dfxdp.nb.model import Resource

from . import listing

REF = "#/components/schemas/{model}"
ERROR_STATUSES = {"400": "Bad request (HTTPBadRequest, InvalidInput, MalformedRequestBody, …)",
                  "401": "Missing or wrong X-Auth-Token (when the server requires one)",
                  "404": "Unknown object, reference or marker", "409": "Conflict (in use, exists, exhausted)",
                  "413": "Body larger than the server accepts", "414": "Request URI too long",
                  "503": "The NB database is unavailable"}
NEUTRON_ERROR = {
    "type": "object", "required": ["NeutronError"], "additionalProperties": False,
    "properties": {"NeutronError": {
        "type": "object", "required": ["type", "message", "detail"], "additionalProperties": False,
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string"}}},
        # under /v2/lbaas also Octavia's fields, which python-octaviaclient prints (dfxdp/api/errors.py)
        "faultcode": {"type": "string"}, "faultstring": {"type": "string"}, "debuginfo": {"type": "null"}},
}
LINKS = {"type": "array", "items": {
    "type": "object", "required": ["rel", "href"], "additionalProperties": False,
    "properties": {"rel": {"enum": ["next", "previous"]}, "href": {"type": "string"}}}}


def _schema(model: type[BaseModel], mode: str, components: dict) -> dict:
    schema = model.model_json_schema(by_alias=True, mode=mode, ref_template=REF)
    components.update(schema.pop("$defs", {}))
    return schema


def _object_schemas(model: type[Resource], parent_field: str | None, components: dict) -> tuple[dict, dict, dict]:
    """(shown, create body, update body) of one resource."""
    shown = _schema(model, "serialization", components)
    shown.pop("required", None)
    shown["properties"]["tenant_id"] = {"type": "string"}
    writable = _schema(model, "validation", components)
    create = {**writable, "properties": {k: v for k, v in writable["properties"].items()
                                         if k not in model.SERVER_OWNED and k != parent_field}}
    create["properties"]["tenant_id"] = {"type": "string", "maxLength": 255}
    create["properties"]["tags"] = {"type": "array", "uniqueItems": True, "maxItems": tags.MAX_TAGS_COUNT,
                                    "items": {"type": "string", "maxLength": tags.MAX_TAG_LEN}}
    create["required"] = [k for k in writable.get("required", []) if k in create["properties"]]
    update = {**writable, "properties": {k: v for k, v in writable["properties"].items()
                                         if k not in model.SERVER_OWNED | model.IMMUTABLE | {"project_id"}}}
    update.pop("required", None)
    return shown, create, update


def _envelope(name: str, schema: dict, required: bool = True) -> dict:
    return {"type": "object", "required": [name] if required else [], "properties": {name: schema}}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(success: str, body: dict | None, errors: list[str]) -> dict:
    answers = {success: _json(body) if body else {"description": "No content"}}
    for status in errors:
        answers[status] = _json({"$ref": REF.format(model="NeutronError")}, ERROR_STATUSES[status])
    return answers


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description,
            "style": "form", "explode": True}


def _list_parameters(model: type[Resource]) -> list[dict]:
    attributes = listing.attributes(model)
    params = [
        _query("fields", {"type": "array", "items": {"type": "string"}}, "Only these attributes"),
        _query("limit", {"type": "integer", "minimum": 0}, "At most this many objects (0: all)"),
        _query("marker", {"type": "string"}, "Id of the last object seen"),
        _query("page_reverse", {"type": "string"}, "The page before the marker when 'true' (any case)"),
        _query("sort_key", {"type": "array", "items": {"enum": sorted(k for k, s in attributes.items() if s)}},
               "Sort keys (as many sort_dir)"),
        _query("sort_dir", {"type": "array", "items": {"enum": ["asc", "desc"]}}, "Sort directions"),
    ]
    filters = sorted(k for k in attributes if k not in listing.RESERVED)
    return params + [_query(k, {"type": "array", "items": {"type": "string"}}, f"Objects whose {k} is one of these")
                     for k in filters]


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def build(collections: list[tuple[str, str, str, type[Resource], str | None]], neutron_prefix: str) -> dict:
    """collections: (path, singular, plural, model, parent field of a nested collection)."""
    components: dict[str, Any] = {"NeutronError": NEUTRON_ERROR}
    paths: dict[str, Any] = {}
    for base, singular, plural, model, parent_field in collections:
        name = model.__name__
        if name not in components:
            components[name], components[name + "Create"], components[name + "Update"] = \
                _object_schemas(model, parent_field, components)
        ref = {"$ref": REF.format(model=name)}
        parents = [_path("parent_id")] if parent_field else []
        op = base.strip("/").replace("/", "_").replace("{", "").replace("}", "")
        list_body = {"type": "object", "required": [plural], "additionalProperties": False,
                     "properties": {plural: {"type": "array", "items": ref}, plural + "_links": LINKS}}
        paths[base] = {
            "get": {"operationId": f"list_{op}", "parameters": parents + _list_parameters(model),
                    "responses": _responses("200", list_body, ["400", "401", "404", "414", "503"])},
            "post": {"operationId": f"create_{op}", "parameters": parents,
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": _envelope(singular, {"$ref": REF.format(model=name + "Create")})}}},
                     "responses": _responses("201", _envelope(singular, ref),
                                             ["400", "401", "404", "409", "413", "414", "503"])},
        }
        one = parents + [_path("obj_id")]
        paths[base + "/{obj_id}"] = {
            "get": {"operationId": f"show_{op}", "parameters": one + [
                _query("fields", {"type": "array", "items": {"type": "string"}}, "Only these attributes")],
                    "responses": _responses("200", _envelope(singular, ref), ["401", "404", "414", "503"])},
            "put": {"operationId": f"update_{op}", "parameters": one,
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": _envelope(singular, {"$ref": REF.format(model=name + "Update")})}}},
                    "responses": _responses("200", _envelope(singular, ref),
                                            ["400", "401", "404", "409", "413", "414", "503"])},
            "delete": {"operationId": f"delete_{op}", "parameters": one,
                       "responses": _responses("204", None, ["401", "404", "409", "414", "503"])},
        }
    paths.update(_router_interface_paths(neutron_prefix))
    return {"openapi": "3.1.0",
            "info": {"title": "dfxdp: Neutron API v2.0 and Octavia v2", "version": "2.0",
                     "description": "Neutron's networking API and Octavia's load balancer API as dfxdp serves "
                                    "them; see docs/api.md for limits, filters and pagination."},
            "paths": paths, "components": {"schemas": components}}


def _router_interface_paths(prefix: str) -> dict:
    request = {"type": "object", "additionalProperties": True,
               "properties": {"subnet_id": {"type": "string"}, "port_id": {"type": "string"}}}
    answer = {"type": "object", "additionalProperties": False,
              "required": ["id", "tenant_id", "project_id", "port_id", "network_id", "subnet_id", "subnet_ids"],
              "properties": {**{k: {"type": "string"} for k in
                                ("id", "tenant_id", "project_id", "port_id", "network_id", "subnet_id")},
                             "subnet_ids": {"type": "array", "items": {"type": "string"}}}}
    return {f"{prefix}/routers/{{router_id}}/{action}": {"put": {
        "operationId": action, "parameters": [_path("router_id")],
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": _responses("200", answer, ["400", "401", "404", "409", "413", "414", "503"])}}
        for action in ("add_router_interface", "remove_router_interface")}
