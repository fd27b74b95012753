"""/v2.0/agents: each `dfxdp agent` as a Neutron agent, from its chassis record.

Shaped as Neutron's OVN driver shows its per-chassis controllers: one agent per chassis,
agent_type "dfxdp agent", binary "dfxdp-agent", host the chassis name; `alive` while its
heartbeat (every 10 s, controller/agent.py) is younger than Neutron's agent_down_time.
An admin may change admin_state_up and description (recorded; dfxdp schedules nothing on
agents) and delete a record (a running agent registers again on its next heartbeat).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from dfxdp.nb.errors import BadRequest, NotFound, not_found
from dfxdp.nb.service import NBService

from . import body, listing, scope

AGENT_TYPE = "dfxdp agent"
BINARY = "dfxdp-agent"
AGENT_DOWN_TIME = 75.0  # seconds: Neutron's default agent_down_time
WRITABLE = {"admin_state_up", "description"}
FILTERS = {"id", "agent_type", "binary", "host", "topic", "admin_state_up", "alive", "description"}


def _matches(value, wanted: list[str]) -> bool:
    """Neutron's filter comparison: strings as given, booleans as true/false in any case."""
    if isinstance(value, bool):
        return str(value).lower() in [w.lower() for w in wanted]
    return str(value) in wanted


def _timestamp(epoch: float) -> str:
    """Neutron's heartbeat_timestamp format."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def agent(chassis: dict, now: float) -> dict:
    return {"id": chassis["id"], "agent_type": AGENT_TYPE, "binary": BINARY, "host": chassis["name"],
            "topic": "n/a", "admin_state_up": chassis.get("admin_state_up", True),
            "description": chassis.get("description", ""), "alive": now - chassis["heartbeat"] < AGENT_DOWN_TIME,
            "heartbeat_timestamp": _timestamp(chassis["heartbeat"]),
            "created_at": chassis["created_at"].replace("T", " ").rstrip("Z"),
            "started_at": chassis["created_at"].replace("T", " ").rstrip("Z"),
            "configurations": {"tunnel_ip": chassis["tunnel_ip"], "tunnel_types": ["vxlan"],
                               "bridge_mappings": chassis.get("bridge_mappings", {}),
                               "snat_routers": chassis.get("snat_routers", [])},
            "availability_zone": None, "resources_synced": None}


def install(app: FastAPI, service: NBService, prefix: str) -> None:
    def get(request: Request, agent_id: str, action: str | None = None) -> dict:
        """The chassis behind an agent the request may see (and, for an action, change)."""
        try:
            chassis = service.get("chassis", agent_id)
        except NotFound:
            raise not_found("agent", agent_id) from None
        ctx = scope.context(request)
        if action:
            scope.check_change(ctx, "agent", chassis, service.list, action)
        return scope.check_show(ctx, "agent", chassis, service.list)

    @app.get(prefix + "/agents", include_in_schema=False)
    async def list_agents(request: Request):
        ctx, now = scope.context(request), time.time()
        chassis = await run_in_threadpool(service.list, "chassis")
        docs = [agent(c, now) for c in scope.visible(ctx, "agent", chassis, service.list)]
        wanted: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            if key in FILTERS:
                wanted.setdefault(key, []).append(value)
        docs = [d for d in docs if all(_matches(d[k], values) for k, values in wanted.items())]
        return {"agents": [listing.select(d, request.query_params.getlist("fields")) for d in docs]}

    @app.get(prefix + "/agents/{agent_id}", include_in_schema=False)
    async def show_agent(agent_id: str, request: Request):
        chassis = await run_in_threadpool(get, request, agent_id)
        return {"agent": listing.select(agent(chassis, time.time()), request.query_params.getlist("fields"))}

    @app.put(prefix + "/agents/{agent_id}", include_in_schema=False)
    async def update_agent(agent_id: str, request: Request):
        await run_in_threadpool(get, request, agent_id, "update")
        change = await body.envelope(request, "agent")
        refused = sorted(set(change) - WRITABLE)
        if refused:
            raise BadRequest("HTTPBadRequest", f"Attribute(s) {', '.join(refused)} of an agent cannot be updated")
        chassis = await run_in_threadpool(service.update, "chassis", agent_id, change)
        return {"agent": agent(chassis, time.time())}

    @app.delete(prefix + "/agents/{agent_id}", include_in_schema=False)
    async def delete_agent(agent_id: str, request: Request):
        await run_in_threadpool(get, request, agent_id, "delete")
        await run_in_threadpool(service.delete, "chassis", agent_id)
        return Response(status_code=204)
