"""The registered apps, in the order the reconciler runs them."""
from .base import App, Entry, LocalView
from .l2 import L2App
from .ports import PortsApp
from .portsec import PortSecurityApp

APPS: list[type[App]] = [PortsApp, PortSecurityApp, L2App]

__all__ = ["APPS", "App", "Entry", "LocalView"]
