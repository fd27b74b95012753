"""What `dfxdp agent` imports before it runs: not eventlet (nor the dnspython and pyOpenSSL it
pulls in), which etcd3gw and futurist only probe for (dfxdp/nb/db/etcd.py); eventlet still
imports afterwards for os-ken's OVS fallback, and where it came first etcd3gw imports beside it."""
import subprocess
import sys

PROBED = ("eventlet", "dns", "OpenSSL")


def _modules_after(code: str) -> set[str]:
    """The PROBED modules loaded in a fresh interpreter after `code`."""
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split()) & set(PROBED)


def test_the_agents_modules_and_the_etcd_driver_leave_eventlet_out():
    assert _modules_after("import dfxdp.cli.main, dfxdp.cli.agent, dfxdp.controller.agent, dfxdp.nb.db.etcd") == set()


def test_eventlet_imports_after_the_etcd_driver():
    assert _modules_after("import dfxdp.nb.db.etcd, eventlet.green.socket") >= {"eventlet"}


def test_the_etcd_driver_imports_where_eventlet_came_first():
    code = ("import eventlet\nfrom dfxdp.nb.db.etcd import Etcd3Client, EtcdStore\n"
            "import etcd3gw.utils\nassert etcd3gw.utils._eventlet is eventlet")
    assert "eventlet" in _modules_after(code)
