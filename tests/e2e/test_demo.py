"""`dfxdp demo` runs end to end and shows traffic passing the pipeline."""
import subprocess
import sys


def test_demo_runs_and_traffic_passes():
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "demo"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert " 0% packet loss" in proc.stdout
    assert "verdicts/XDP_PASS" in proc.stdout
