"""What the dfxdp load balancer (an L4 balancer in XDP, docs/load-balancer.md)
accepts of Octavia's API: anything else is refused with a 400 naming what is
supported, before it reaches NB, rather than accepted and silently not done."""
from __future__ import annotations

from .errors import BadRequest

LISTENER_PROTOCOLS = ("TCP", "UDP")
POOL_ALGORITHMS = ("SOURCE_IP_PORT", "SOURCE_IP", "ROUND_ROBIN")
PERSISTENCE_TYPES = ("SOURCE_IP",)
MONITOR_TYPES = ("TCP", "UDP-CONNECT", "HTTP")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


def _refuse(what: str, value, supported: tuple[str, ...]) -> None:
    raise BadRequest("NotSupported", f"{what} {value} is not supported by the dfxdp provider (L4, in XDP): "
                     f"use one of {', '.join(supported)}")


def check_listener(listener: dict) -> None:
    if listener["protocol"] not in LISTENER_PROTOCOLS:
        _refuse("Listener protocol", listener["protocol"], LISTENER_PROTOCOLS)


def check_pool(pool: dict) -> None:
    if pool["protocol"] not in LISTENER_PROTOCOLS:
        _refuse("Pool protocol", pool["protocol"], LISTENER_PROTOCOLS)
    if pool["lb_algorithm"] not in POOL_ALGORITHMS:
        _refuse("Load balancing algorithm", pool["lb_algorithm"], POOL_ALGORITHMS)
    persistence = pool.get("session_persistence")
    if persistence is not None:
        kind = persistence.get("type") if isinstance(persistence, dict) else persistence
        if kind not in PERSISTENCE_TYPES:
            _refuse("Session persistence", kind, PERSISTENCE_TYPES)


def check_healthmonitor(hm: dict) -> None:
    if hm["type"] not in MONITOR_TYPES:
        _refuse("Health monitor type", hm["type"], MONITOR_TYPES)
    if hm["type"] == "HTTP" and hm.get("http_method", "GET") not in HTTP_METHODS:
        _refuse("HTTP method", hm["http_method"], HTTP_METHODS)
    codes = str(hm.get("expected_codes", "200"))
    if not all(part.strip().isdigit() for chunk in codes.split(",") for part in chunk.split("-")):
        raise BadRequest("ValidationException", f"expected_codes {codes!r}: use a code (200), a list (200,202) "
                                                f"or a range (200-204)")
