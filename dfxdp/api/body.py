"""Request bodies and URLs, checked before anything reaches the NB.

Limits (docs/api.md):
- a body of at most MAX_BODY_BYTES (oslo.middleware's default max_request_body_size, what
  Neutron runs behind): more is 413 HTTPRequestEntityTooLarge, read no further;
- a request URI of at most MAX_URI_BYTES (eventlet's request-line limit, Neutron's server): 414
  (for URIs up to MAX_REQUEST_HEAD_BYTES, what `dfxdp server` lets uvicorn read);
- Content-Type application/json (or none): anything else is 400, as Neutron's
  "Unsupported Content-Type";
- JSON nested at most MAX_JSON_DEPTH levels (Neutron's deepest body has 4) and every string,
  key or value, valid UTF-8 (JSON's \\ud800 escapes can spell a lone surrogate, which no
  store or client can encode): else 400 MalformedRequestBody.
"""
from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from dfxdp.nb.errors import BadRequest

from .errors import RequestTooLarge, URITooLong

MAX_BODY_BYTES = 114688
MAX_URI_BYTES = 8192
MAX_JSON_DEPTH = 32
# what the HTTP server buffers of a request's line and headers: URIs up to this size reach
# check_request and get their 414 NeutronError (past it, the server's own 400 answers)
MAX_REQUEST_HEAD_BYTES = 1 << 20


def _too_large(size: str) -> RequestTooLarge:
    return RequestTooLarge("HTTPRequestEntityTooLarge", f"Request is too large: {size} bytes, more than the "
                                                        f"{MAX_BODY_BYTES} bytes this server accepts.")


def check_request(request: Request) -> None:
    """The URI's size and the body's declared size, before any route runs (as oslo.middleware's
    sizelimit does, for every method)."""
    size = len(request.scope.get("raw_path") or b"") + len(request.scope.get("query_string") or b"") + 1
    if size > MAX_URI_BYTES:
        raise URITooLong("HTTPRequestURITooLong", f"Request-URI of {size} bytes is longer than the "
                                                  f"{MAX_URI_BYTES} bytes this server accepts.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(declared)


async def _read(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():  # a chunked body declares no length: count as it comes
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(f"over {size}")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_tree(value: Any) -> None:
    """Depth and encodability of every string, walked without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest("MalformedRequestBody", f"Malformed request body: JSON nested deeper than "
                                                         f"{MAX_JSON_DEPTH} levels.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest("MalformedRequestBody", "Malformed request body: a string is not valid "
                                                         "UTF-8 (a lone surrogate).") from None


async def read_json(request: Request) -> Any:
    """The parsed body, or None when there is none."""
    raw = await _read(request)
    if not raw:
        return None
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media != "application/json":
        raise BadRequest("HTTPBadRequest", f"Unsupported Content-Type {media!r}: send application/json")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadRequest("MalformedRequestBody", "Malformed request body: not valid JSON.") from None
    _check_tree(body)
    return body


async def envelope(request: Request, name: str) -> dict:
    """The object inside {"<name>": {...}}."""
    objs, _ = await envelopes(request, name, None)
    return objs[0]


async def envelopes(request: Request, name: str, plural: str | None) -> tuple[list[dict], bool]:
    """The objects of a create: {"<name>": {...}}, or Neutron's bulk {"<plural>": [{...}, ...]}
    when `plural` is given; and whether it was a bulk."""
    body = await read_json(request)
    if plural and isinstance(body, dict) and plural in body:
        items = body[plural]
        if len(body) > 1 or not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise BadRequest("HTTPBadRequest", f"Request body must be a JSON object with a '{plural}' list of "
                                               f"objects")
        if not items:
            raise BadRequest("HTTPBadRequest", "Resources required")
        return items, True
    if body is None:
        raise BadRequest("HTTPBadRequest", f"Request body with a '{name}' object is required")
    if not isinstance(body, dict) or not isinstance(body.get(name), dict):
        raise BadRequest("HTTPBadRequest", f"Request body must be a JSON object with a '{name}' object")
    return [body[name]], False


async def json_object(request: Request) -> dict:
    """A body that is a plain JSON object (router interface actions); none is {}."""
    body = await read_json(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("HTTPBadRequest", "Request body must be a JSON object")
    return body
