"""/v2.0/quotas (Neutron's quotas and quota_details extensions):

    GET    /v2.0/quotas                        projects with limits of their own (admins)
    GET    /v2.0/quotas/<project>              its limits (admins, or the project itself)
    GET    /v2.0/quotas/<project>/default      the defaults
    GET    /v2.0/quotas/<project>/details      limit, used, reserved per resource
    PUT    /v2.0/quotas/<project>              {"quota": {<resource>: <limit>}} (admins; -1 unlimited)
    DELETE /v2.0/quotas/<project>              back to the defaults (admins)
"""
from __future__ import annotations

from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from dfxdp.nb import quotas
from dfxdp.nb.service import NBService

from . import body, scope


def _shown(project: str, limits: dict) -> dict:
    return {**limits, "project_id": project, "tenant_id": project}


def install(app: FastAPI, service: NBService, prefix: str) -> None:
    base = prefix + "/quotas"

    def may_read(request: Request, project: str) -> None:
        scope.context(request).enforce("get_quota", {"project_id": project})

    def may_change(request: Request, action: str) -> None:
        """An action on every project's quotas (no target project: admins only, by the rules)."""
        scope.context(request).enforce(f"{action}_quota", {})

    @app.get(base, include_in_schema=False)
    async def list_quotas(request: Request):
        may_change(request, "get")
        found = await run_in_threadpool(service.quotas.projects)
        return {"quotas": [_shown(project, limits) for project, limits in sorted(found.items())]}

    def reader(what: Callable[[str], dict]):
        """A GET of one project's quota, shown as what(project)."""
        async def read(project: str, request: Request):
            may_read(request, project)
            return {"quota": await run_in_threadpool(what, project)}
        return read

    app.add_api_route(base + "/{project}", reader(service.quotas.limits), methods=["GET"], include_in_schema=False)
    app.add_api_route(base + "/{project}/default", reader(lambda _project: dict(service.quotas.defaults)),
                      methods=["GET"], include_in_schema=False)
    app.add_api_route(base + "/{project}/details", reader(service.quotas.details), methods=["GET"],
                      include_in_schema=False)

    @app.put(base + "/{project}", include_in_schema=False)
    async def update(project: str, request: Request):
        may_change(request, "update")
        limits = quotas.check_limits(await body.read_json(request))
        return {"quota": await run_in_threadpool(service.quotas.update, project, limits)}

    @app.delete(base + "/{project}", include_in_schema=False)
    async def reset(project: str, request: Request):
        may_change(request, "delete")
        await run_in_threadpool(service.quotas.reset, project)
        return Response(status_code=204)
