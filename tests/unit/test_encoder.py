"""The compiled encoders (dfxdp/datapath/encoder.py) give exactly cffi's bytes for every
struct of maps/*.h, with every field set, with some left out, and refuse what cffi refuses."""
import pathlib
import random
import re

import pytest

from dfxdp.datapath.encoder import compile_encoder
from dfxdp.datapath.libbpf import ffi

ROOT = pathlib.Path(__file__).resolve().parents[2]
STRUCTS = sorted({name for header in (ROOT / "maps").glob("*.h")
                  for name in re.findall(r"^struct (\w+) \{", header.read_text(), re.M)})


def sample(ctype, rng, full):
    """A value cffi takes for `ctype`: every field (full) or a random part of them."""
    if ctype.kind == "primitive":
        bits = ffi.sizeof(ctype) * 8
        signed = int(ffi.cast(ctype, -1)) < 0
        return rng.randrange(-(1 << bits - 1), 1 << bits - 1) if signed else rng.randrange(1 << bits)
    if ctype.kind == "array":
        n = ctype.length if full else rng.randrange(ctype.length + 1)
        if ctype.item.kind == "primitive" and ffi.sizeof(ctype.item) == 1 and rng.random() < 0.5:
            return bytes(rng.randrange(256) for _ in range(n))
        return [sample(ctype.item, rng, full) for _ in range(n)]
    return {name: sample(field.type, rng, full) for name, field in ctype.fields if full or rng.random() < 0.6}


def by_cffi(name, value):
    return bytes(ffi.buffer(ffi.new(f"struct {name} *", value)))


@pytest.mark.parametrize("name", STRUCTS)
def test_every_struct_encodes_as_cffi_does(name):
    encode = compile_encoder(f"struct {name}")
    assert encode is not None, f"struct {name}: no compiled encoder (a layout the compiler refuses)"
    rng = random.Random(name)
    for full in (True, False, False, False):
        value = sample(ffi.typeof(f"struct {name}"), rng, full)
        assert encode(value) == by_cffi(name, value), value
    assert encode({}) == bytes(ffi.sizeof(f"struct {name}"))


def test_bad_values_are_refused_as_cffi_refuses_them():
    encode = compile_encoder("struct fdb_key")
    for bad in ({"net_key": 1, "bogus": 2}, {"net_key": -1}, {"net_key": 1 << 32}, {"mac": [1] * 7},
                {"mac": [256]}, {"mac": b"\x01" * 7}):
        with pytest.raises(Exception):
            by_cffi("fdb_key", bad)
        with pytest.raises((LookupError, TypeError, ValueError, OverflowError)):
            encode(bad)
    scalar = compile_encoder("__u32")
    assert scalar(7) == bytes(ffi.buffer(ffi.new("__u32 *", 7)))
    with pytest.raises(TypeError):
        scalar({"x": 1})
