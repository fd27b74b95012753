"""A DNS world for BPF tests: a network built through the real NB service (its DHCP
port, named and unnamed ports, default security groups), turned into a LocalView
and pushed through the real apps and reconciler; and query builders."""
from __future__ import annotations

from scapy.layers.dns import DNS, DNSQR, DNSRROPT
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dfxdp.controller.apps import LocalView
from dfxdp.controller.wiring import build_datapath_control
from dfxdp.nb.db import open_store
from dfxdp.nb.service import NBService

KINDS = {"network": "networks", "subnet": "subnets", "port": "ports", "security_group": "security_groups",
         "security_group_rule": "security_group_rules"}


class DnsWorld:
    """Network `n` (10.70.0.0/24, IPv6 too), a local VM `vm1`, a remote `web` with two
    IPv4 addresses and one IPv6, an unnamed port, and another network `m` with its own `web`."""

    def __init__(self, pipeline, vm_ifindex: int):
        self.pipeline, self.vm_ifindex = pipeline, vm_ifindex
        self.svc = svc = NBService(open_store("memory://"))
        self.net = svc.create("network", {"name": "n"})
        self.subnet = svc.create("subnet", {"network_id": self.net["id"], "cidr": "10.70.0.0/24"})
        self.subnet6 = svc.create("subnet", {"network_id": self.net["id"], "cidr": "fd00:70::/64",
                                             "ip_version": 6, "enable_dhcp": False})
        self.vm = svc.create("port", {"network_id": self.net["id"], "dns_name": "vm1",
                                      "fixed_ips": [{"subnet_id": self.subnet["id"]}],
                                      "binding:host_id": "ch1"})
        self.web = svc.create("port", {"network_id": self.net["id"], "dns_name": "web", "binding:host_id": "ch2",
                                       "fixed_ips": [{"subnet_id": self.subnet["id"]}, {"subnet_id": self.subnet["id"]},
                                                     {"subnet_id": self.subnet6["id"]}]})
        self.anon = svc.create("port", {"network_id": self.net["id"], "fixed_ips": [{"subnet_id": self.subnet["id"]}]})
        other = svc.create("network", {"name": "m"})
        svc.create("subnet", {"network_id": other["id"], "cidr": "10.71.0.0/24"})
        self.other_web = svc.create("port", {"network_id": other["id"], "dns_name": "web"})
        self.control = build_datapath_control(pipeline.maps)
        self.sync()

    def sync(self) -> None:
        """Program the maps from what NB holds now."""
        objects = {attr: {d["id"]: d for d in self.svc.list(kind)} for kind, attr in KINDS.items()}
        view = LocalView(chassis="ch1", tunnel_ip="198.18.0.1", **objects,
                         chassis_by_name={"ch1": {"tunnel_ip": "198.18.0.1"}, "ch2": {"tunnel_ip": "198.18.0.2"}},
                         local_ports={self.vm["id"]: self.vm_ifindex})
        result = self.control.apply(view)
        assert not result.errors, result.errors

    @property
    def dhcp(self) -> dict:
        return self.svc.list("port", {"network_id": [self.net["id"]], "device_owner": ["network:dhcp"]})[0]

    @property
    def server_ip(self) -> str:
        return self.dhcp["fixed_ips"][0]["ip_address"]

    def v4(self, port: dict) -> list[str]:
        return [f["ip_address"] for f in port["fixed_ips"] if ":" not in f["ip_address"]]

    def frame(self, payload, sport: int = 33333, dst: str | None = None):
        """A datagram from vm1 to the network's DNS server (or `dst`) on port 53."""
        return Ether(src=self.vm["mac_address"], dst=self.dhcp["mac_address"]) / \
            IP(src=self.v4(self.vm)[0], dst=dst or self.server_ip) / UDP(sport=sport, dport=53) / payload


def query(name: str, qtype: str = "A", edns: int | None = None, do: bool = False, qid: int = 0x1234, rd: int = 1):
    q = DNS(id=qid, rd=rd, qd=DNSQR(qname=name, qtype=qtype))
    if edns is not None:
        q.ar = DNSRROPT(rclass=edns, z=0x8000 if do else 0)
    return q
