"""A private Open vSwitch with the userspace (netdev) datapath, for tests, the
bench and the OVS fallback on machines without the openvswitch kernel module.

    with OvsServer(ns=router) as ovs:
        ovs.add_bridge("br0")
        ovs.add_port("br0", "rc")               # -> its OpenFlow port number
        ovs.add_flows("br0", ["priority=0,actions=drop"])

Each server has its own directory under /tmp holding its database, sockets, pid
and log files (OVS_RUNDIR, OVS_DBDIR, OVS_LOGDIR and OVS_SYSCONFDIR point there),
so several run side by side and none touches a system OVS. close() kills both
daemons and removes the directory, also after a failed start.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
import time

from .netns import run, stop_process

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
OPENFLOW = "OpenFlow13"


class OvsServer:
    def __init__(self, ns: str | None = None):
        """`ns`: the namespace the daemons run in, where the ports they bridge live."""
        self.ns = ns
        self.dir: pathlib.Path | None = None
        self.env: dict[str, str] = {}
        self.daemons: list[subprocess.Popen] = []

    def __enter__(self) -> "OvsServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _path(self, sub: str, name: str) -> str:
        return str(self.dir / sub / name)

    @property
    def db_url(self) -> str:
        """The OVSDB address an agent is given (`dfxdp agent --ovsdb`)."""
        return f"unix:{self._path('run', 'db.sock')}"

    def start(self) -> "OvsServer":
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="dfxdp-ovs-"))
        try:
            dirs = {"OVS_RUNDIR": "run", "OVS_DBDIR": "db", "OVS_LOGDIR": "log", "OVS_SYSCONFDIR": "etc"}
            for sub in dirs.values():
                (self.dir / sub).mkdir()
            self.env = {**os.environ, **{var: str(self.dir / sub) for var, sub in dirs.items()}}
            run(["ovsdb-tool", "create", self._path("db", "conf.db"), SCHEMA], env=self.env)
            self._run_daemons()
        except BaseException:
            self.close()
            raise
        return self

    def restart(self) -> None:
        """Stop both daemons and start them again on the same database (as a package upgrade or
        `systemctl restart openvswitch-switch` does): bridges and ports stay configured, flows,
        OVS's routes and its neighbour entries are gone."""
        for proc in reversed(self.daemons):
            stop_process(proc)
        self.daemons.clear()
        try:
            self._run_daemons()
        except BaseException:
            self.close()
            raise

    def _run_daemons(self) -> None:
        database, socket = self._path("db", "conf.db"), self._path("run", "db.sock")
        self._daemon("ovsdb-server", [database, f"--remote=punix:{socket}"])
        self._wait(lambda: self.vsctl("--no-wait", "init", check=False).returncode == 0, "ovsdb-server")
        self._daemon("ovs-vswitchd", [f"unix:{socket}", "--disable-system"])
        self._wait(lambda: self.appctl("ovs-vswitchd", "version", check=False).returncode == 0, "ovs-vswitchd")

    def _daemon(self, name: str, args: list[str]) -> None:
        cmd = [name, *args, f"--unixctl={self._path('run', name + '.ctl')}",
               f"--pidfile={self._path('run', name + '.pid')}", f"--log-file={self._path('log', name + '.log')}"]
        if self.ns:
            cmd = ["ip", "netns", "exec", self.ns, *cmd]
        with open(self._path("log", name + ".stderr"), "wb") as stderr:
            self.daemons.append(subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr))

    def _wait(self, ready, name: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.daemons[-1].poll() is not None or time.monotonic() > deadline:
                log = pathlib.Path(self._path("log", name + ".log"))
                detail = (log.read_text() if log.exists() else "") + pathlib.Path(
                    self._path("log", name + ".stderr")).read_text()
                raise RuntimeError(f"{name} did not start: {detail.strip()[-2000:]}")
            time.sleep(0.05)

    def vsctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ovs-vsctl", f"--db=unix:{self._path('run', 'db.sock')}", *args], check=check, env=self.env)

    def appctl(self, daemon: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ovs-appctl", "-t", self._path("run", daemon + ".ctl"), *args], check=check, env=self.env)

    def ofctl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ovs-ofctl", "-O", OPENFLOW, *args], env=self.env, input=stdin, check=check)

    def add_bridge(self, bridge: str) -> None:
        """A userspace bridge that forwards nothing until flows say so (fail_mode=secure)."""
        self.vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev",
                   f"protocols={OPENFLOW}", "fail_mode=secure")

    def add_port(self, bridge: str, port: str) -> int:
        """Add an existing interface of the server's namespace; returns its OpenFlow port number."""
        self.vsctl("add-port", bridge, port)
        ofport = int(self.vsctl("get", "interface", port, "ofport").stdout)
        if ofport < 0:
            error = self.vsctl("get", "interface", port, "error").stdout.strip()
            raise RuntimeError(f"OVS could not add {port} to {bridge}: {error}")
        return ofport

    def add_flows(self, bridge: str, flows: list[str]) -> None:
        self.ofctl("add-flows", bridge, "-", stdin="\n".join(flows) + "\n")

    def close(self) -> None:
        for proc in reversed(self.daemons):
            stop_process(proc)
        self.daemons.clear()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
