"""The OVS fallback: br-int under the agent's os-ken controller (docs/fallback.md).

bridge.py (OVSDB and ovs-vswitchd), ofctl.py (the OpenFlow controller),
flows.py (desired flows and their reconciler), tunnels.py (VXLAN between
chassis), fallback.py (all of it, once per agent pass).
"""
