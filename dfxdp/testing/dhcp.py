"""DHCP clients in VM namespaces, for the tests and the demo: `udhcpc` (busybox) and
`dhclient` (isc-dhcp-client) with scripts that apply the address, MTU and default route
to eth0 and write what they were told (their environment) to a file per event.

    client = Client(directory, "udhcpc", UDHCPC_SCRIPT)
    client.proc = topo.popen(["busybox", "udhcpc", "-f", "-i", "eth0", "-s", str(client.script)], ns=vm)
    client.wait_event("bound"); client.env("bound")["ip"]

Everything lives in `directory` (lease, pid, script, events): nothing touches the host's files.
"""
from __future__ import annotations

import pathlib
import subprocess
import time

DHCLIENT_CONF = """option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, domain-search, host-name,
        interface-mtu, rfc3442-classless-static-routes;
"""

# dhclient-script's job, reduced to the address, MTU and default route of eth0, and a
# resolv.conf (search list, name servers) written to the client's directory, not /etc
DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
  PREINIT) ip link set "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    [ -n "$new_interface_mtu" ] && ip link set "$interface" mtu "$new_interface_mtu"
    [ -n "$new_routers" ] && ip route replace default via "${new_routers%% *}"
    { [ -n "$new_domain_search" ] && echo "search $new_domain_search"
      for server in $new_domain_name_servers; do echo "nameserver $server"; done; } > "$DIR/resolv.conf" ;;
  RELEASE|EXPIRE|STOP) ip addr flush dev "$interface" ;;
esac
env | sort > "$DIR/$reason.env"
echo "$reason" >> "$DIR/events"
"""

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr replace "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route replace default via "${router%% *}" ;;
esac
env | sort > "$DIR/$1.env"
echo "$1" >> "$DIR/events"
"""


class Client:
    """One DHCP client's files (in `directory`) and the events its script saw."""

    def __init__(self, directory: pathlib.Path, name: str, script: str):
        self.dir = directory / name
        self.dir.mkdir()
        self.script = self.dir / "script"
        self.script.write_text(script.replace('"$DIR', f'"{self.dir}'))
        self.script.chmod(0o755)
        self.proc: subprocess.Popen | None = None

    def events(self) -> list[str]:
        path = self.dir / "events"
        return path.read_text().split() if path.exists() else []

    def env(self, event: str) -> dict[str, str]:
        lines = (self.dir / f"{event}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def wait_event(self, *events: str, after: int = 0, timeout: float = 60) -> None:
        """Until the script has seen one of `events` past the first `after` events."""
        deadline = time.monotonic() + timeout
        while not set(events) & set(self.events()[after:]):
            assert self.proc is None or self.proc.poll() is None, \
                f"the client exited ({self.proc.returncode}) before {events}: events {self.events()}"
            assert time.monotonic() < deadline, f"none of {events} within {timeout}s: events {self.events()}"
            time.sleep(0.2)
