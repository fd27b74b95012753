"""The registered apps, in the order the reconciler writes their maps: policy
(security groups, port security) before what makes a port reachable (fdb,
routes) and before if_config, which makes a tap's frames enter the pipeline:
a new port is never reachable unfiltered, not even for one pass. Apps that own
OpenFlow tables (flood, igmp, ra, dhcp6, snat, fallback_sg) program the OVS fallback's br-int instead (controller/ovs/)."""
from .base import App, Entry, LocalView
from .dhcp import DhcpApp
from .dhcp6 import Dhcp6App
from .dns import DnsApp
from .fallback_sg import FallbackSecurityApp
from .fip import FloatingIPApp
from .flood import FloodApp
from .igmp import IgmpApp
from .l2 import L2App
from .l3 import L3App
from .lb import LoadBalancerApp
from .lb_fip import LoadBalancerFloatingIPApp
from .mtu import NetworkMtuApp
from .ports import PortsApp
from .portsec import PortSecurityApp
from .ra import RouterAdvertApp
from .sg import SecurityGroupApp
from .snat import SnatApp

APPS: list[type[App]] = [SecurityGroupApp, PortSecurityApp, NetworkMtuApp, L2App, L3App, FloatingIPApp, LoadBalancerApp,
                         LoadBalancerFloatingIPApp, DnsApp, DhcpApp, PortsApp, FloodApp, IgmpApp, RouterAdvertApp,
                         Dhcp6App, SnatApp, FallbackSecurityApp]

__all__ = ["APPS", "App", "Entry", "LocalView"]
