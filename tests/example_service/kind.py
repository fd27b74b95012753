"""The blackhole: an IPv4 address of a network that no frame from a port may reach."""
from __future__ import annotations

from typing import ClassVar

from dfxdp.nb import kinds
from dfxdp.nb.model import IP, Resource


class Blackhole(Resource):
    network_id: str
    ip_address: IP
    IMMUTABLE: ClassVar[set[str]] = {"network_id"}


BLACKHOLE = kinds.Kind("blackhole", Blackhole, view="blackholes", relation=kinds.on_networks("network_id"),
                       collection="blackholes", cli="blackhole", columns=("id", "name", "network_id", "ip_address"),
                       indexes=(kinds.field_index("network", "network_id"),))
