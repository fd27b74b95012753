"""`pip install .` ships the compiled kernels and the map headers inside the package."""
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_wheel_contains_kernels_and_map_headers(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("dfxdp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for obj in ("pipeline", "stage_l2", "stage_l3", "stage_sg", "stage_output", "stage_portsec", "xdp_pass"):
        assert f"dfxdp/_bpf/{obj}.o" in names
    assert {f"dfxdp/_bpf/maps/{h.name}" for h in (ROOT / "maps").glob("*.h")} <= names
    # what a user's hook is built against (`dfxdp hook cflags` points there in an installed package)
    assert {"dfxdp/_bpf/include/dfxdp/hook.h", "dfxdp/_bpf/lib/pipeline.h", "dfxdp/_bpf/lib/common.h"} <= names
    assert any(n.startswith("dfxdp/_libbpf") and n.endswith(".so") for n in names)
    assert "dfxdp/controller/agent.py" in names  # controller/ installed as dfxdp.controller
