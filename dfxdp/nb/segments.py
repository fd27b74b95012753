"""Network segments (Neutron's provider extension): how a network's frames leave a chassis.

- vxlan: the default; the VNI is the network's key, allocated by the NB.
- flat / vlan: only for router:external networks (the datapath carries tenant networks over
  VXLAN alone), on a physical network that each agent maps to a NIC (`--bridge-mappings
  physnet:IFACE`; `--external-interface IFACE` maps DEFAULT_PHYSNET). A segment an admin asks
  for is one network's: one flat network per physical network, one per VLAN of it. External
  networks made without provider fields are flat on DEFAULT_PHYSNET and, as before provider
  networks, may be several (they share the NIC).
Errors are Neutron's (its ml2 type drivers' words).
"""
from __future__ import annotations

from .errors import BadRequest, Conflict
from .txn import ALLOC

DEFAULT_PHYSNET = "provider"  # the install guide's name; what an external network gets by default
VLAN_MIN, VLAN_MAX = 1, 4094
PROVIDER_FIELDS = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")


def _invalid(message: str) -> BadRequest:
    return BadRequest("InvalidInput", f"Invalid input for operation: {message}.")


def segment_key(physnet: str, vlan: int | None) -> str:
    """The reservation that makes a flat physical network, or one VLAN of it, one network's."""
    return f"{ALLOC}segment/{physnet}/{vlan or 'flat'}"


def fill(net: dict) -> str | None:
    """Check and complete a new network's provider fields; the key of the segment to reserve
    when an admin asked for one."""
    given = any(net[f] is not None for f in PROVIDER_FIELDS)
    kind = net["provider:network_type"] or ("flat" if net["router:external"] else "vxlan")
    physnet, seg = net["provider:physical_network"], net["provider:segmentation_id"]
    if kind == "vxlan":
        if net["router:external"] and given:
            raise _invalid("an external network is flat or vlan in dfxdp, not vxlan")
        if physnet is not None:
            raise _invalid("provider:physical_network specified for vxlan network")
        if seg is not None:
            raise _invalid("dfxdp allocates a vxlan network's segmentation_id (its VNI): leave it out")
        net.update({"provider:network_type": "vxlan", "provider:segmentation_id": net["key"]})
        return None
    if not net["router:external"]:
        raise _invalid(f"dfxdp carries {kind} networks only as router:external networks (tenant networks are vxlan)")
    if physnet is None:
        if given:
            raise _invalid(f"physical_network required for {kind} provider network")
        physnet = DEFAULT_PHYSNET
    if kind == "flat" and seg is not None:
        raise _invalid("segmentation_id prohibited for flat provider network")
    if kind == "vlan":
        if seg is None:
            raise _invalid("segmentation_id required for VLAN provider network")
        if not VLAN_MIN <= seg <= VLAN_MAX:
            raise _invalid(f"segmentation_id out of range ({VLAN_MIN} through {VLAN_MAX})")
    net.update({"provider:network_type": kind, "provider:physical_network": physnet,
                "provider:segmentation_id": seg})
    return segment_key(physnet, seg) if given else None


def in_use(net: dict) -> Conflict:
    physnet, seg = net["provider:physical_network"], net["provider:segmentation_id"]
    if seg is None:
        return Conflict("FlatNetworkInUse", f"Unable to create the flat network. Physical network {physnet} is "
                                            f"in use.")
    return Conflict("VlanIdInUse", f"Unable to create the network. The VLAN {seg} on physical network {physnet} "
                                   f"is in use.")
