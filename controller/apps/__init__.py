"""The registered apps, in the order the reconciler runs them."""
from .base import App, Entry, LocalView
from .fip import FloatingIPApp
from .l2 import L2App
from .l3 import L3App
from .ports import PortsApp
from .portsec import PortSecurityApp
from .sg import SecurityGroupApp

APPS: list[type[App]] = [PortsApp, PortSecurityApp, SecurityGroupApp, L2App, L3App, FloatingIPApp]

__all__ = ["APPS", "App", "Entry", "LocalView"]
