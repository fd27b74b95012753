"""Every answer that is not a success leaves as Neutron's error document.

{"NeutronError": {"type", "message", "detail"}} with the HTTP status of Neutron's
exception class: NB errors with their own, unknown paths 404 and methods 405 (with
Allow), a store that cannot be reached 503, anything unforeseen 500 — never a
plain-text body or a traceback.
"""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from dfxdp.nb.db import StoreError
from dfxdp.nb.errors import NBError
from dfxdp.nb.render import to_json

log = logging.getLogger(__name__)

HTTP_TYPES = {404: "HTTPNotFound", 405: "HTTPMethodNotAllowed"}
OCTAVIA_PREFIXES = ("/v2/lbaas", "/v2.0/lbaas")


class RequestTooLarge(NBError):
    status = 413


class URITooLong(NBError):
    status = 414


class NeutronJSON(JSONResponse):
    """Rendered as every answer is (dfxdp/nb/render.py)."""

    def render(self, content: Any) -> bytes:
        return to_json(content)


def neutron_error(status: int, type_: str, message: str, headers: dict | None = None) -> NeutronJSON:
    return NeutronJSON({"NeutronError": {"type": type_, "message": message, "detail": ""}},
                       status_code=status, headers=headers)


def error_response(exc: NBError) -> NeutronJSON:
    return NeutronJSON(exc.to_neutron(), status_code=exc.status)


def octavia_error_response(exc: NBError) -> NeutronJSON:
    """Under /v2/lbaas also Octavia's fields: python-octaviaclient prints `faultstring`
    (openstacksdk reads NeutronError)."""
    return NeutronJSON({**exc.to_neutron(), "faultcode": "Client" if exc.status < 500 else "Server",
                        "faultstring": exc.message, "debuginfo": None}, status_code=exc.status)


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods of every route whose path matches: the Allow header of a 405."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(NBError)
    async def nb_error(request: Request, exc: NBError):
        if request.url.path.startswith(OCTAVIA_PREFIXES):
            return octavia_error_response(exc)
        return error_response(exc)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError):
        log.warning("NB store unavailable for %s %s: %s", request.method, request.url.path, exc)
        return neutron_error(503, "ServiceUnavailable", f"The service is unavailable: the NB database failed "
                                                        f"({type(exc).__name__}). Try again later.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return neutron_error(exc.status_code, HTTP_TYPES.get(exc.status_code, "HTTPError"),
                             f"{exc.detail}: {request.method} {request.url.path}", headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return neutron_error(500, "HTTPInternalServerError",
                             "Request Failed: internal server error while processing your request.")
