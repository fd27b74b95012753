"""Who may call the API: nobody checked (`none`), one static token (`token`), or Keystone
(`keystone`: keystonemiddleware's auth_token, configured by `[keystone_authtoken]` in the
dfxdp config file, as in front of Neutron).

auth_token is WSGI middleware and the API is ASGI, so each request's headers are handed to
auth_token as a WSGI environ whose inner app only records that it was reached: auth_token
validates the token (with Keystone, caching), drops any identity headers the client sent and
sets the token's (X-Project-Id, X-Roles, X-User-Id, ...), which then replace the request's
headers; a request it refuses gets its answer (401 with WWW-Authenticate) unchanged.
"""
from __future__ import annotations

import hmac
import io
from typing import Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from dfxdp.nb.errors import Unauthorized

from . import errors

MODES = ("none", "token", "keystone")
# Paths answered without credentials: Neutron's version document (as its api-paste) and the
# Prometheus scrape.
OPEN_PATHS = frozenset({"/", "/metrics"})


class Authenticator(Protocol):
    async def __call__(self, request: Request) -> Response | None:
        """None to let the request through (its headers possibly rewritten), else the answer."""


class StaticToken:
    """Every request carries this X-Auth-Token (small setups, tests)."""

    def __init__(self, token: str):
        self.token = token.encode()

    async def __call__(self, request: Request) -> Response | None:
        if request.url.path in OPEN_PATHS:
            return None
        if hmac.compare_digest(request.headers.get("x-auth-token", "").encode(), self.token):
            return None
        return errors.error_response(Unauthorized("Unauthorized",
                                                  "Authentication required: missing or wrong X-Auth-Token"))


def _reached(environ, start_response):
    """auth_token's inner app: the request passed."""
    environ["dfxdp.authenticated"] = True
    start_response("200 OK", [])
    return [b""]


class Keystone:
    """keystonemiddleware's auth_token on `oslo_conf` (an oslo.config ConfigOpts read from the
    dfxdp config file, whose `[keystone_authtoken]` section configures it)."""

    def __init__(self, oslo_conf):
        from keystonemiddleware import auth_token

        self.protocol = auth_token.AuthProtocol(_reached, {"oslo_config_config": oslo_conf})

    async def __call__(self, request: Request) -> Response | None:
        if request.url.path in OPEN_PATHS:
            return None
        environ = _environ(request)
        status, headers, content = await run_in_threadpool(self._call, environ)
        if not environ.get("dfxdp.authenticated"):
            return Response(content, status_code=int(status.split()[0]), headers=dict(headers))
        request.scope["headers"] = _headers(request, environ)
        return None

    def _call(self, environ: dict) -> tuple[str, list, bytes]:
        answer: dict = {}

        def start_response(status, headers, exc_info=None):
            answer.update(status=status, headers=headers)

        content = b"".join(self.protocol(environ, start_response))
        return answer["status"], answer["headers"], content


def _environ(request: Request) -> dict:
    """A WSGI environ of the request's line and headers (auth_token reads no body)."""
    server = request.scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": request.method, "SCRIPT_NAME": "", "PATH_INFO": request.url.path,
        "QUERY_STRING": request.url.query, "SERVER_NAME": server[0], "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": request.url.scheme, "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _headers(request: Request, environ: dict) -> list[tuple[bytes, bytes]]:
    """The request's headers as auth_token left them (identity headers the token's)."""
    headers = [(name, value) for name, value in request.scope["headers"]
               if name in (b"content-type", b"content-length")]
    for key, value in environ.items():
        if key.startswith("HTTP_") and isinstance(value, str):
            headers.append((key[5:].replace("_", "-").lower().encode("latin-1"), value.encode("latin-1")))
    return headers


def oslo_config(config_path: str | None):
    """The dfxdp config file as oslo.config reads it (keystonemiddleware's and oslo.policy's
    options are registered on it by them)."""
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf(args=[], project="dfxdp", default_config_files=[config_path] if config_path else [])
    return conf
