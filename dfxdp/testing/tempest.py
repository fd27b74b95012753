"""OpenStack's integration suite, Tempest, run on a dfxdp server behind a Keystone
(dfxdp/testing/keystone.py): a workspace with its tempest.conf (the network service only,
`api_extensions` as the server lists them at `GET /v2.0/extensions`, an external network for
floating IPs and router gateways), `tempest run`, and its results per test."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

import httpx
import tempest

from .keystone import ADMIN_PASSWORD, REGION, KeystoneServer

BIN = pathlib.Path(sys.executable).parent
PUBLIC_NETWORK = "tempest-public"  # floating IPs and router gateways come from this external network
PUBLIC_CIDR = "172.24.4.0/24"  # devstack's public range: only stored by dfxdp, never routed here

TEMPEST_CONF = """\
[DEFAULT]
log_file = {dir}/tempest.log
[auth]
admin_username = admin
admin_password = {password}
admin_project_name = admin
admin_domain_name = Default
use_dynamic_credentials = true
[identity]
uri_v3 = {keystone}
auth_version = v3
region = {region}
[identity-feature-enabled]
api_v2 = false
[service_available]
neutron = true
nova = false
cinder = false
glance = false
swift = false
horizon = false
[network]
public_network_id = {public_network}
floating_network_name = {public_name}
# how long Tempest waits for a status: dfxdp answers at once, and a wait that does not end in a
# minute never will (the default, 300 s, would only slow a failing run)
build_timeout = 60
[network-feature-enabled]
api_extensions = {extensions}
ipv6 = true
ipv6_subnet_attributes = true
port_security = {port_security}
[validation]
run_validation = false
"""

# `tempest run` prints one line per test, `{worker} test.id[tags] [seconds] ... ok|FAILED|SKIPPED: why`,
# and one per class whose set-up or tear-down failed or skipped it: `{worker} setUpClass (class.id) ...`
RESULT_LINE = re.compile(r"^\{\d+\} (?P<test>(?:setUpClass|tearDownClass) \([\w.]+\)|[\w.]+)(?:\[[^\]]*\])?"
                         r"(?: \[[\d.]+s\])? \.\.\. (?P<status>ok|FAILED|SKIPPED)(?:: (?P<why>.*))?$")


@dataclass
class Results:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # test: reason
    output: str = ""
    returncode: int = 0

    def summary(self) -> str:
        return f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"


def parse(output: str) -> Results:
    results = Results(output=output)
    for line in output.splitlines():
        match = RESULT_LINE.match(line.strip())
        if not match:
            continue
        test, status = match["test"], match["status"]
        if status == "ok":
            results.passed.append(test)
        elif status == "FAILED":
            results.failed.append(test)
        else:
            results.skipped[test] = match["why"] or ""
    return results


class TempestWorkspace:
    """A Tempest workspace pointed at `keystone` and the dfxdp server at `network_url` (which
    Keystone's catalog lists as the network service)."""

    def __init__(self, keystone: KeystoneServer, network_url: str):
        self.keystone, self.network_url = keystone, network_url
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="dfxdp-tempest-"))

    def _neutron(self, method: str, path: str, **body) -> dict:
        answer = httpx.request(method, f"{self.network_url}/v2.0/{path}", json=body or None, timeout=60,
                               headers={"X-Auth-Token": self.keystone.token()})
        answer.raise_for_status()
        return answer.json()

    def configure(self) -> list[str]:
        """tempest.conf and the external network; the extensions the server lists."""
        extensions = sorted(e["alias"] for e in self._neutron("GET", "extensions")["extensions"])
        public = self._neutron("POST", "networks", network={"name": PUBLIC_NETWORK, "router:external": True})["network"]
        self._neutron("POST", "subnets", subnet={"network_id": public["id"], "cidr": PUBLIC_CIDR, "ip_version": 4,
                                                 "name": "public-subnet"})
        (self.dir / "etc").mkdir()
        (self.dir / "etc" / "tempest.conf").write_text(TEMPEST_CONF.format(
            dir=self.dir, password=ADMIN_PASSWORD, keystone=self.keystone.url, region=REGION,
            public_network=public["id"], public_name=PUBLIC_NETWORK, extensions=",".join(extensions),
            port_security=str("port-security" in extensions).lower()))
        top = pathlib.Path(tempest.__file__).parent
        (self.dir / ".stestr.conf").write_text(f"[DEFAULT]\ntest_path={top / 'test_discover'}\n"
                                               f"top_dir={top.parent}\ngroup_regex=([^\\.]*\\.)*\n")
        return extensions

    def run(self, regex: str = r"^tempest\.api\.network\.", concurrency: int = 2,
            exclude: list[str] = (), timeout: float = 1500) -> Results:
        cmd = [str(BIN / "tempest"), "run", "--regex", regex, "--concurrency", str(concurrency)]
        if exclude:
            exclude_file = self.dir / "exclude.txt"
            exclude_file.write_text("\n".join(exclude) + "\n")
            cmd += ["--exclude-list", str(exclude_file)]
        done = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TEMPEST_CONFIG_DIR": str(self.dir / "etc")})
        results = parse(done.stdout + done.stderr)
        results.returncode = done.returncode
        return results

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
