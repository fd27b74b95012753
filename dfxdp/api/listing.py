"""Neutron's list queries: filters, fields, sorting and pagination.

As Neutron's api_common and its native pagination answer them:
- `?attr=v1&attr=v2`: objects whose attr is v1 or v2; a parameter naming no attribute of the
  resource is ignored; `tenant_id` means `project_id`;
- `fields=a&fields=b`: only those attributes;
- `sort_key=k1&sort_dir=asc&sort_key=k2&sort_dir=desc`: as many dirs as keys (else 400), keys
  scalar attributes, `id` ascending as the last tie-break; without sort keys, creation order;
- `limit=N` (0: all), `marker=<id>` (the last object seen; an unknown one is 404, as Neutron's
  lookup of it), `page_reverse=true` (the page before the marker, still in forward order);
  `<collection>_links` then holds `next` and `previous` hrefs built as Neutron builds them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from pydantic import BaseModel

from dfxdp.nb import tags
from dfxdp.nb.mirror import Shown
from dfxdp.nb.errors import BadRequest, not_found
from dfxdp.nb.render import to_json


RESERVED = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"}
SCALAR_TYPES = {"string", "integer", "number", "boolean", "null"}
DERIVED = {"tenant_id"}  # shown on every object, stored as project_id


@dataclass
class ListQuery:
    filters: dict[str, list[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sorts: list[tuple[str, bool]] = field(default_factory=list)  # (key, ascending)
    limit: int = 0
    marker: str | None = None
    page_reverse: bool = False


def _schema_types(schema: dict) -> set[str]:
    if "anyOf" in schema:
        return set().union(*(_schema_types(s) for s in schema["anyOf"]))
    return {schema.get("type", "object")}  # a $ref is a nested object


@functools.cache
def attributes(model: type[BaseModel]) -> dict[str, bool]:
    """Attribute names as clients see them -> whether it is scalar (sortable)."""
    props = model.model_json_schema(by_alias=True, mode="serialization")["properties"]
    found = {name: _schema_types(schema) <= SCALAR_TYPES for name, schema in props.items()}
    return {**found, **{name: True for name in DERIVED}}


def parse(request: Request, model: type[BaseModel]) -> ListQuery:
    params = request.query_params
    known = attributes(model)
    query = ListQuery(fields=[f for f in params.getlist("fields") if f])
    for key, value in params.multi_items():
        if (key in known and key not in RESERVED) or key in tags.FILTERS:
            query.filters.setdefault("project_id" if key == "tenant_id" else key, []).append(value)
    keys, dirs = [k for k in params.getlist("sort_key") if k], [d for d in params.getlist("sort_dir") if d]
    if len(keys) != len(dirs):
        raise BadRequest("HTTPBadRequest", "The number of sort_keys and sort_dirs must be same")
    unknown = [k for k in keys if not known.get(k)]
    if unknown:
        raise BadRequest("HTTPBadRequest", f"{unknown} is invalid attribute for sort_keys")
    wrong = [d for d in dirs if d not in ("asc", "desc")]
    if wrong:
        raise BadRequest("HTTPBadRequest", f"{wrong} is invalid value for sort_dirs, valid value is 'asc' and 'desc'")
    query.sorts = [("project_id" if k == "tenant_id" else k, d == "asc") for k, d in zip(keys, dirs)]
    raw_limit = params.get("limit", "0")
    if not raw_limit.isdigit():
        raise BadRequest("BadRequest", f"Bad limit request: Limit must be an integer 0 or greater and "
                                       f"not '{raw_limit}'.")
    query.limit = int(raw_limit)
    query.marker = params.get("marker") or None
    query.page_reverse = params.get("page_reverse", "False").lower() == "true"
    return query


def _compare(a: Any, b: Any) -> int:
    """Neutron's emulated sort: None first, then the values' own order (mixed types by name)."""
    if a is None or b is None:
        return (a is not None) - (b is not None)
    if type(a) is not type(b):
        a, b = type(a).__name__, type(b).__name__
    return (a > b) - (a < b)


def sort(docs: list[dict], sorts: list[tuple[str, bool]]) -> list[dict]:
    if not sorts:
        return docs
    order = [*sorts, ("id", True)] if "id" not in dict(sorts) else sorts

    def cmp(x: dict, y: dict) -> int:
        for key, ascending in order:
            result = _compare(x.get(key), y.get(key))
            if result:
                return result if ascending else -result
        return 0

    return sorted(docs, key=functools.cmp_to_key(cmp))


def _place(docs: list[dict], obj_id: str) -> int | None:
    """Where obj_id is in docs: the server's copy keeps an index of a kind's whole list (unfiltered)."""
    if isinstance(docs, Shown):
        return docs.place(obj_id)
    return next((i for i, d in enumerate(docs) if d["id"] == obj_id), None)


def paginate(docs: list[dict], query: ListQuery, kind: str) -> list[dict]:
    if not query.limit:
        return docs
    if query.marker:
        index = _place(docs, query.marker)
        if index is None:
            raise not_found(kind, query.marker)
    else:
        index = len(docs) if query.page_reverse else -1
    if query.page_reverse:
        return docs[max(index - query.limit, 0):index]
    return docs[index + 1:index + 1 + query.limit]


def links(request: Request, page: list[dict], query: ListQuery) -> list[dict]:
    """Neutron's get_pagination_links: `next` unless a forward page came out short, `previous`
    unless a reverse one did; each the request's own query with the marker moved."""
    if not query.limit:
        return []
    base = str(request.base_url).rstrip("/") + request.url.path
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("marker", "page_reverse")]
    result = []
    if not (len(page) < query.limit and not query.page_reverse):
        marker = [("marker", page[-1]["id"])] if page else []
        result.append({"rel": "next", "href": f"{base}?{urlencode(params + marker)}"})
    if not (len(page) < query.limit and query.page_reverse):
        marker = [("marker", page[0]["id"])] if page else []
        result.append({"rel": "previous", "href": f"{base}?{urlencode(params + marker + [('page_reverse', 'True')])}"})
    return result


def select(doc: dict, fields: list[str]) -> dict:
    return {k: v for k, v in doc.items() if k in fields} if fields else doc


def answer(plural: str, page: list[dict], fields: list[str], links: list[dict]) -> bytes:
    """The list's JSON, `{plural: [objects], plural_links: [links]}`, joined from each object's
    own: whole objects of the server's copy come rendered (a list of 100,000 ports is a join,
    not 80 MiB of rendering), others are rendered here."""
    if fields:
        objects = [to_json(select(doc, fields)) for doc in page]
    else:
        objects = page.rendered if isinstance(page, Shown) else [to_json(doc) for doc in page]
    head = b"{" + to_json(plural) + b":["
    tail = b"]" + (b"," + to_json(plural + "_links") + b":" + to_json(links) if links else b"") + b"}"
    if len(objects) < 2:
        return head + b"".join(objects) + tail
    # one join with head and tail on the first and last objects: 80 MiB copied once, not twice
    return b",".join([head + objects[0], *objects[1:-1], objects[-1] + tail])
