"""One map contract: struct layouts live only in maps/*.h. Python must not
restate them with struct/ctypes formats."""
import pathlib
import re

from dfxdp.datapath.libbpf import ffi

ROOT = pathlib.Path(__file__).resolve().parents[2]
FORBIDDEN = re.compile(r"struct\.(pack|unpack|calcsize|Struct)\b|ctypes\.(Structure|Union)|from ctypes import")


def test_no_hand_written_layouts_in_python():
    offenders = []
    for base in ("dfxdp", "controller"):
        for path in (ROOT / base).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if FORBIDDEN.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_every_struct_in_maps_headers_is_known_to_python():
    names = set()
    for header in (ROOT / "maps").glob("*.h"):
        names |= set(re.findall(r"^struct (\w+) \{", header.read_text(), re.M))
    assert names, "no structs found in maps/"
    for name in names:
        assert ffi.sizeof(f"struct {name}") > 0
