"""`dfxdp server --config FILE`: settings from an INI file, clear errors for a bad one."""
import subprocess
import sys
import time
import urllib.error
import urllib.request

from dfxdp.testing.etcd import free_port


def test_config_file_sets_listen_db_and_token(tmp_path):
    port = free_port()
    conf = tmp_path / "dfxdp.conf"
    conf.write_text(f"[api]\nlisten = 127.0.0.1:{port}\nauth_token = t0ken\n[db]\nurl = sqlite:///{tmp_path}/nb.db\n")
    proc = subprocess.Popen([sys.executable, "-m", "dfxdp.cli.main", "server", "--config", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2.0/networks", timeout=1)
                raise AssertionError("no token needed?")
            except urllib.error.HTTPError as err:
                assert err.code == 401
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v2.0/networks", headers={"X-Auth-Token": "t0ken"})
        assert urllib.request.urlopen(req, timeout=5).status == 200
        assert (tmp_path / "nb.db").exists()
    finally:
        proc.terminate()
        proc.wait(10)


def test_bad_config_file_is_one_clear_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("this is not ini\n")
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "server", "--config", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "is malformed" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "server", "--listen", "nonsense"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "expected HOST:PORT" in proc.stderr


def test_bad_dns_domain_in_config_is_one_clear_line(tmp_path):
    conf = tmp_path / "dns.conf"
    conf.write_text(f"[db]\nurl = sqlite:///{tmp_path}/nb.db\n[dns]\ndomain = no-trailing-dot\n")
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "server", "--config", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "[dns] domain" in proc.stderr and "is not a FQDN" in proc.stderr
