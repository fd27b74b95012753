"""A real etcd (Debian's etcd-server) for tests, benchmarks and the multi-node demo."""
from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

ETCD = "/usr/bin/etcd"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


QUOTA_BYTES = 8 << 30
MAX_TXN_OPS = 20000
MAX_REQUEST_BYTES = 32 << 20


class EtcdServer:
    """One etcd member on `host` (inside netns `ns` when given); restartable on its data dir."""

    def __init__(self, host: str = "127.0.0.1", client_port: int | None = None, peer_port: int | None = None,
                 ns: str | None = None, name: str | None = None, also_on: str | None = None):
        self.host, self.ns = host, ns
        self.also_on = also_on  # a second address clients may use (e.g. a management network)
        self.client_port = client_port or free_port()
        self.peer_port = peer_port or free_port()
        self.data_dir = pathlib.Path(tempfile.mkdtemp(prefix="dfxdp-etcd-"))
        self.name = name or self.data_dir.name
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"etcd://{self.host}:{self.client_port}"

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    def start(self, timeout: float = 30) -> "EtcdServer":
        peer = f"http://{self.host}:{self.peer_port}"
        cmd = [ETCD, "--name", self.name, "--data-dir", str(self.data_dir / "data"),
               "--listen-client-urls", ",".join([self.client_url] + ([f"http://{self.also_on}:{self.client_port}"]
                                                                      if self.also_on else [])),
               "--advertise-client-urls", self.client_url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"{self.name}={peer}", "--initial-cluster-state", "new",
               "--log-level", "warn", "--logger", "zap",
               # the 2 GiB default fills up with the uncompacted history of a 100,000-port bench run
               "--quota-backend-bytes", str(QUOTA_BYTES),
               # Neutron's bulk creates are one NB transaction each: a bulk of 1,000 ports is about
               # 5,000 operations and 2 MiB (the defaults: 128 operations, 1.5 MiB)
               "--max-txn-ops", str(MAX_TXN_OPS), "--max-request-bytes", str(MAX_REQUEST_BYTES)]
        if self.ns:
            cmd = ["ip", "netns", "exec", self.ns, *cmd]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if self._healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"etcd did not become healthy in {timeout}s: {self.log.read_text()[-2000:]}")

    def _healthy(self) -> bool:
        if self.ns:  # not reachable from here: ask from inside the namespace
            probe = subprocess.run(["ip", "netns", "exec", self.ns, "curl", "-sf", f"{self.client_url}/health"],
                                   capture_output=True, text=True)
            return probe.returncode == 0 and '"true"' in probe.stdout
        try:
            with urllib.request.urlopen(f"{self.client_url}/health", timeout=1) as resp:
                return b'"true"' in resp.read()
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log.unlink(missing_ok=True)

    def __enter__(self) -> "EtcdServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
