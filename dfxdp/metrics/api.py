"""API server metrics: requests by method, route and status, and their latency; /metrics."""
from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from .agent import LATENCY_BUCKETS


class _Measure:
    """Each HTTP request counted and timed. Pure ASGI (not Starlette's BaseHTTPMiddleware, which
    costs a task and a wrapped response stream per request); the status is read as the response
    starts."""

    def __init__(self, app, requests: Counter, latency: Histogram):
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = []

        async def send_noting_status(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, send_noting_status)
        path = getattr(scope.get("route"), "path", "unmatched")  # the template, so ids do not explode the labels
        method = scope["method"]
        self.requests.labels(method, path, str(status[0] if status else 500)).inc()
        self.latency.labels(method, path).observe(time.monotonic() - started)


def instrument(app: FastAPI) -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("dfxdp_api_requests", "API requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("dfxdp_api_request_duration_seconds", "API request latency", ["method", "route"],
                        buckets=LATENCY_BUCKETS, registry=registry)

    app.add_middleware(_Measure, requests=requests, latency=latency)

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
