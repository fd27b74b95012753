"""A real Keystone for tests: pip-installed `keystone` on sqlite with fernet tokens, served by
gunicorn, bootstrapped with `keystone-manage bootstrap` (projects admin and service, roles
reader < member < manager < admin and service), plus what a Neutron deployment adds: a service
user for keystonemiddleware's auth_token and dfxdp in the catalog as the `network` service."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import httpx

from .etcd import free_port
from .netns import stop_process

BIN = pathlib.Path(sys.executable).parent
REGION = "RegionOne"
ADMIN_PASSWORD = "dfxdp-admin-secret"
SERVICE_USER = "dfxdp"
SERVICE_PASSWORD = "dfxdp-service-secret"

KEYSTONE_CONF = """\
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///{dir}/keystone.db
[identity]
# bcrypt's cheapest cost: Tempest makes users and tokens by the hundred, and at the default
# cost hashing their passwords takes most of a run on a busy machine (a test Keystone only)
password_hash_rounds = 4
[token]
provider = fernet
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-keys
[credential]
key_repository = {dir}/credential-keys
"""


class KeystoneServer:
    """One Keystone on 127.0.0.1:<free port>, its state in a temporary directory."""

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="dfxdp-keystone-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v3"
        self.log = self.dir / "keystone.log"
        self.conf = self.dir / "keystone.conf"
        self.proc: subprocess.Popen | None = None
        self._admin_token: str | None = None

    @property
    def env(self) -> dict:
        return {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(self.conf)}

    def _manage(self, *args: str) -> None:
        done = subprocess.run([str(BIN / "keystone-manage"), "--config-file", str(self.conf), *args],
                              capture_output=True, text=True, env=self.env, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"keystone-manage {args[0]} failed: {done.stderr[-3000:]}")

    def start(self, timeout: float = 120) -> "KeystoneServer":
        self.conf.write_text(KEYSTONE_CONF.format(dir=self.dir))
        self._manage("db_sync")
        for repo in ("fernet_setup", "credential_setup"):
            self._manage(repo, "--keystone-user", "root", "--keystone-group", "root")
        self._manage("bootstrap", "--bootstrap-password", ADMIN_PASSWORD, "--bootstrap-admin-url", self.url,
                     "--bootstrap-public-url", self.url, "--bootstrap-internal-url", self.url,
                     "--bootstrap-region-id", REGION)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dfxdp.testing.keystone", f"127.0.0.1:{self.port}"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=self.env, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keystone exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        log = self.log.read_text()[-3000:]
        self.close()
        raise RuntimeError(f"keystone did not answer in {timeout}s: {log}")

    def token(self, user: str = "admin", password: str = ADMIN_PASSWORD, project: str = "admin") -> str:
        """A project-scoped token (password auth in the Default domain)."""
        answer = httpx.post(f"{self.url}/auth/tokens", timeout=30, json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
        answer.raise_for_status()
        return answer.headers["X-Subject-Token"]

    def call(self, method: str, path: str, **body) -> dict:
        """An admin's request to the identity API, its JSON."""
        if self._admin_token is None:
            self._admin_token = self.token()
        answer = httpx.request(method, self.url + path, json=body or None, timeout=30,
                               headers={"X-Auth-Token": self._admin_token})
        answer.raise_for_status()
        return answer.json() if answer.content else {}

    def _find(self, collection: str, name: str) -> str:
        return self.call("GET", f"/{collection}?name={name}")[collection][0]["id"]

    def add_network_service(self, endpoint: str) -> None:
        """dfxdp as the catalog's `network` service, and its service user (role `service` in the
        project `service`, which lets keystonemiddleware validate tokens)."""
        service = self.call("POST", "/services", service={"type": "network", "name": "neutron"})["service"]
        for interface in ("public", "internal", "admin"):
            self.call("POST", "/endpoints", endpoint={"service_id": service["id"], "interface": interface,
                                                      "url": endpoint, "region_id": REGION})
        project = self.call("POST", "/projects", project={"name": "service", "domain_id": "default"})["project"]
        user = self.call("POST", "/users", user={"name": SERVICE_USER, "password": SERVICE_PASSWORD,
                                                 "domain_id": "default"})["user"]
        role = self._find("roles", "service")
        self.call("PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{role}")

    def authtoken_section(self) -> str:
        """`[keystone_authtoken]` for dfxdp's config file."""
        return (f"[keystone_authtoken]\nwww_authenticate_uri = {self.url}\nauth_url = {self.url}\n"
                f"auth_type = password\nusername = {SERVICE_USER}\npassword = {SERVICE_PASSWORD}\n"
                f"user_domain_id = default\nproject_name = service\nproject_domain_id = default\n"
                f"region_name = {REGION}\n")

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc, grace=20)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "KeystoneServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def serve(bind: str) -> None:
    """gunicorn serving Keystone's WSGI app. Keystone parses sys.argv as its own options when
    it loads, so the app is loaded with an empty command line (not by gunicorn's CLI)."""
    from gunicorn.app.base import BaseApplication

    class Keystone(BaseApplication):
        def load_config(self):
            # one synchronous worker: requests one at a time on the sqlite file, as SQLite fails
            # ("database is locked", at once, no timeout helps) a reader turned writer while
            # another process writes
            for key, value in {"bind": bind, "workers": 1, "timeout": 120}.items():
                self.cfg.set(key, value)

        def load(self):
            sys.argv = sys.argv[:1]
            from keystone.wsgi.api import application

            return application

    Keystone().run()


if __name__ == "__main__":
    serve(sys.argv[1])
