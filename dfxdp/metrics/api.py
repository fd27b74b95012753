"""API server metrics: requests by method, route and status, and their latency; /metrics."""
from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from .agent import LATENCY_BUCKETS


def instrument(app: FastAPI) -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("dfxdp_api_requests", "API requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("dfxdp_api_request_duration_seconds", "API request latency", ["method", "route"],
                        buckets=LATENCY_BUCKETS, registry=registry)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.monotonic()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")  # the template, so ids do not explode the labels
        requests.labels(request.method, path, str(response.status_code)).inc()
        latency.labels(request.method, path).observe(time.monotonic() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
