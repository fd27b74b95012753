"""Fixtures shared by every test: private bpffs mounts, loaded pipelines, topologies.

Tests run as root on the real kernel. Every resource gets a unique name and is
removed even when the test fails.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import uuid

import pytest

TEST_BPFFS_ROOT = pathlib.Path("/run/dfxdp-test")


def _clusters() -> list:
    """The clusters made so far (none where no test imported the cluster helper)."""
    module = sys.modules.get("dfxdp.testing.cluster")
    return module.Cluster.made if module else []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure keeps the logs of the clusters its test made and of those open at the time
    (a module's): its message names their directory."""
    report = (yield).get_result()
    if report.failed:
        clusters = _clusters()
        for cluster in clusters[getattr(item, "dfxdp_clusters_from", len(clusters)):]:
            cluster.keep_logs = True
        for cluster in clusters:
            if not cluster.closed:
                cluster.keep_logs = True


def _remove_closed_clusters_logs() -> None:
    for cluster in _clusters():
        if cluster.closed and not cluster.keep_logs:
            cluster.remove_logs()


@pytest.fixture(autouse=True)
def cluster_logs(request):
    """The logs of closed clusters no failure needs go after each test (and at the end)."""
    request.node.dfxdp_clusters_from = len(_clusters())
    yield
    _remove_closed_clusters_logs()


def pytest_sessionfinish(session, exitstatus):
    _remove_closed_clusters_logs()


@pytest.fixture
def bpffs_dir():
    """A fresh bpffs mounted just for this test."""
    from dfxdp.datapath import libbpf

    path = TEST_BPFFS_ROOT / uuid.uuid4().hex[:12]
    libbpf.ensure_bpffs(path)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        os.rmdir(path)


@pytest.fixture
def pipeline(bpffs_dir):
    """The whole pipeline loaded (maps pinned in a private bpffs), not attached."""
    from dfxdp.datapath.pipeline import Pipeline

    pipe = Pipeline(bpffs_dir / "chassis").load()
    try:
        yield pipe
    finally:
        pipe.destroy()


@pytest.fixture
def topo(request):
    """A Topology named after the test, torn down afterwards."""
    from dfxdp.testing.netns import Topology

    with Topology(request.node.name.replace("test_", "")[:5]) as t:
        yield t


@pytest.fixture
def test_iface():
    """Factory for throwaway interfaces in this netns (their ifindex is a valid
    BPF_PROG_TEST_RUN ingress_ifindex); veth pairs, since this kernel may lack
    the dummy driver. All deleted afterwards."""
    from dfxdp.testing.netns import ifindex, run, unique_suffix

    made = []

    def make() -> tuple[str, int]:
        name = f"dfd{unique_suffix()}"[:15]
        run(["ip", "link", "add", name, "type", "veth", "peer", "name", name[:13] + "pr"])
        made.append(name)
        return name, ifindex(name)

    try:
        yield make
    finally:
        for name in made:
            run(["ip", "link", "del", name], check=False)
