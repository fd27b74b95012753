"""`dfxdp demo` runs end to end on the embedded DB and every check it shows holds."""
import subprocess
import sys


def test_demo_runs_and_every_check_holds():
    proc = subprocess.run([sys.executable, "-m", "dfxdp.cli.main", "demo"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.count("✔") == 7 and "✘" not in proc.stdout
    assert "verdicts/XDP_REDIRECT" in proc.stdout and "chassis ch2" in proc.stdout
