"""One map contract: struct layouts live only in maps/*.h. Python must not
restate them with struct/ctypes formats (dfxdp/datapath/encoder.py compiles
formats from cffi's own layout of those structs, and tests/unit/test_encoder.py
checks them against cffi: it is the one module allowed to use `struct`)."""
import pathlib
import re

from dfxdp.datapath.libbpf import ffi

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPILED_FROM_CFFI = {"dfxdp/datapath/encoder.py"}
FORBIDDEN = re.compile(r"struct\.(pack|unpack|calcsize|Struct)\b|ctypes\.(Structure|Union)|from ctypes import")


def test_no_hand_written_layouts_in_python():
    offenders = []
    for base in ("dfxdp", "controller"):
        for path in (ROOT / base).rglob("*.py"):
            if str(path.relative_to(ROOT)) in COMPILED_FROM_CFFI:
                continue
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


LPM_KEYS = {"PORTSEC_PREFIX_BASE": ("portsec_key", "addr"), "ROUTE_PREFIX_BASE": ("route_key", "dst"),
            "NET_MTU_PREFIX_BASE": ("net_mtu_key", "addr")}


def test_lpm_prefix_bases_are_the_bits_before_the_matched_field():
    from dfxdp.datapath.libbpf import lib

    for base, (struct, field) in LPM_KEYS.items():
        after_prefixlen = ffi.offsetof(f"struct {struct}", field) - ffi.sizeof("__u32")
        assert getattr(lib, base) == after_prefixlen * 8, base


def test_lpm_prefix_lengths_are_written_with_the_bases_on_both_sides():
    literal = re.compile(r"""prefixlen["']?\s*[:=]\s*\d""")
    offenders = [f"{path.relative_to(ROOT)}: {line.strip()}"
                 for base in ("bpf", "controller") for path in sorted((ROOT / base).rglob("*"))
                 if path.suffix in (".c", ".h", ".py") for line in path.read_text().splitlines()
                 if literal.search(line)]
    assert offenders == []
