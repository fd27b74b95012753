"""The chassis' Open vSwitch as the agent sees it through OVSDB (ovs-vsctl --db=URL)
and ovs-vswitchd's control socket (ovs-appctl).

The agent creates and owns `br-int`: userspace `netdev` datapath unless the
openvswitch kernel module loads and OVS offers the `system` datapath;
OpenFlow 1.3 only; `fail_mode=secure`, so that without its controller the bridge
keeps the flows it has and makes up none (standalone mode would turn it into a
learning switch flooding every network into every other); in-band control off.
"""
from __future__ import annotations

import json
import logging
import pathlib
import subprocess

log = logging.getLogger(__name__)

INTEGRATION_BRIDGE = "br-int"
TUNNEL_PORT = "vxlan0"  # br-int's flow-based VXLAN port (controller/ovs/tunnels.py)
OPENFLOW = "OpenFlow13"
DEFAULT_OVSDB = "unix:/var/run/openvswitch/db.sock"
OVSDB_TIMEOUT = 10  # seconds ovs-vsctl waits for the database (and, without --no-wait, for ovs-vswitchd)
CONTROLLER_BACKOFF_MS = 1000  # OVS retries its controller at least this often (default up to 8 s)


class OvsError(OSError):
    """OVSDB or ovs-vswitchd refused a command or cannot be reached."""


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=OVSDB_TIMEOUT + 5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OvsError(f"{cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        raise OvsError(f"{' '.join(cmd[:4])}…: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def kernel_datapath_available() -> bool:
    """True when the openvswitch kernel module is loaded or loads now."""
    module = pathlib.Path("/sys/module/openvswitch")
    if not module.exists():
        try:
            subprocess.run(["modprobe", "-q", "openvswitch"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return module.exists()


class Ovsdb:
    def __init__(self, url: str):
        self.url = url

    def vsctl(self, *args: str) -> str:
        return _run(["ovs-vsctl", f"--db={self.url}", f"--timeout={OVSDB_TIMEOUT}", *args])

    def reachable(self) -> bool:
        try:
            self.vsctl("--no-wait", "get", "Open_vSwitch", ".", "_uuid")
            return True
        except OvsError:
            return False

    def get(self, table: str, record: str, column: str) -> str:
        """A column in ovs-vsctl's text form, quotes stripped."""
        return self.vsctl("get", table, record, column).strip().strip('"')

    def datapath_types(self) -> list[str]:
        return [t.strip() for t in self.get("Open_vSwitch", ".", "datapath_types").strip("[]").split(",") if t.strip()]

    def choose_datapath_type(self) -> str:
        """`system` (kernel) where OVS offers it and the module loads, `netdev` (userspace) otherwise."""
        return "system" if "system" in self.datapath_types() and kernel_datapath_available() else "netdev"

    def ensure_bridge(self, name: str, datapath_type: str, controller: str | None, chassis: str,
                      hwaddr: str | None = None) -> None:
        """Create or re-assert the bridge's settings (idempotent; one OVSDB transaction)."""
        settings = [f"datapath_type={datapath_type}", f"protocols={OPENFLOW}", "fail_mode=secure",
                    "other_config:disable-in-band=true", f"external_ids:dfxdp-chassis={chassis}"]
        if hwaddr:
            settings.append(f"other_config:hwaddr={hwaddr}")
        args = ["--may-exist", "add-br", name, "--", "set", "bridge", name, *settings]
        if controller:
            args += ["--", "set-controller", name, controller,
                     "--", "set", "controller", name, f"max_backoff={CONTROLLER_BACKOFF_MS}"]
        self.vsctl(*args)

    def dpid(self, bridge: str) -> int:
        return int(self.get("Bridge", bridge, "datapath_id"), 16)

    def ports(self, bridge: str) -> list[str]:
        return self.vsctl("list-ports", bridge).split()

    def add_port(self, bridge: str, name: str, *settings: str) -> None:
        self.vsctl("--may-exist", "add-port", bridge, name, *(["--", "set", "interface", name, *settings]
                                                                if settings else []))

    def del_port(self, bridge: str, name: str) -> None:
        self.vsctl("--if-exists", "del-port", bridge, name)

    def ofports(self) -> dict[str, int]:
        """Interface name -> OpenFlow port number, for interfaces OVS could open."""
        rows = _rows(self.vsctl("--format=json", "--columns=name,ofport", "list", "Interface"))
        return {r["name"]: r["ofport"] for r in rows if isinstance(r["ofport"], int) and r["ofport"] > 0}

    # ---- ovs-vswitchd ----
    def appctl_target(self) -> str:
        """ovs-vswitchd's control socket, found beside the database socket (OVS keeps both in its rundir)."""
        if not self.url.startswith("unix:"):
            raise OvsError(f"ovs-vswitchd's control socket cannot be found from {self.url}")
        rundir = pathlib.Path(self.url[len("unix:"):]).parent
        pidfile = rundir / "ovs-vswitchd.pid"
        if pidfile.exists():
            pid = pidfile.read_text().strip()
            if (rundir / f"ovs-vswitchd.{pid}.ctl").exists():
                return str(rundir / f"ovs-vswitchd.{pid}.ctl")
        return str(rundir / "ovs-vswitchd.ctl")

    def appctl(self, *args: str) -> str:
        return _run(["ovs-appctl", "-t", self.appctl_target(), f"--timeout={OVSDB_TIMEOUT}", *args])


def _rows(out: str) -> list[dict]:
    """ovs-vsctl --format=json output as one dict per row."""
    data = json.loads(out)
    return [dict(zip(data["headings"], row)) for row in data["data"]]
