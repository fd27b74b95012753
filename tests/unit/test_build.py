"""The build step: compiles with clang -target bpf, skips what is up to date,
stops on a compile error with clang's message."""
import os
import subprocess
import sys

import pytest

from dfxdp import build


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A private bpf/ + maps/ + output dir, so the real build is not touched."""
    src, maps, out = tmp_path / "bpf", tmp_path / "maps", tmp_path / "out"
    src.mkdir(), maps.mkdir()
    (maps / "thing.h").write_text("struct thing { __u32 a; };\n")
    (src / "ok.c").write_text(
        '#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include "maps/thing.h"\n'
        'SEC("xdp") int ok(struct xdp_md *ctx) { return XDP_PASS; }\n'
        'char _license[] SEC("license") = "GPL";\n')
    monkeypatch.setattr(build, "ROOT", tmp_path)
    monkeypatch.setattr(build, "BPF_SRC", src)
    monkeypatch.setattr(build, "MAPS_SRC", maps)
    monkeypatch.setattr(build, "OUT", out)
    return tmp_path


def test_builds_objects_and_ships_headers(tree):
    results = build.build_all()
    assert [(p.name, rebuilt) for p, rebuilt in results] == [("ok.o", True)]
    obj = tree / "out" / "ok.o"
    assert obj.read_bytes()[:4] == b"\x7fELF" and obj.read_bytes()[18] == 0xF7  # EM_BPF
    assert (tree / "out" / "maps" / "thing.h").read_text() == (tree / "maps" / "thing.h").read_text()


def test_unchanged_sources_are_not_rebuilt_but_header_changes_are(tree):
    build.build_all()
    assert [r for _, r in build.build_all()] == [False]
    header = tree / "maps" / "thing.h"
    header.write_text("struct thing { __u64 a; };\n")  # an included header changed
    # file times tick with the kernel's coarse clock: make "later" explicit, not a race
    built = (tree / "out" / "ok.o").stat().st_mtime
    os.utime(header, (built + 1, built + 1))
    assert [r for _, r in build.build_all()] == [True]
    assert [r for _, r in build.build_all(force=True)] == [True]


def test_compile_error_stops_the_build_with_clangs_message(tree):
    (tree / "bpf" / "broken.c").write_text("int broken(void) { return undeclared_thing; }\n")
    with pytest.raises(build.BuildError) as err:
        build.build_all()
    msg = str(err.value)
    assert "clang failed on bpf/broken.c" in msg
    assert "use of undeclared identifier 'undeclared_thing'" in msg
    assert not (tree / "out" / "broken.o").exists()


def test_removed_sources_stop_shipping(tree):
    build.build_all()
    (tree / "bpf" / "ok.c").unlink()
    build.build_all()
    assert not (tree / "out" / "ok.o").exists()


def test_command_line_reports_clang_error_and_exits_nonzero(tmp_path):
    """python -m dfxdp.build on a source tree with a broken kernel: exit 1, clang's text."""
    import shutil

    repo = build.ROOT
    copy = tmp_path / "repo"
    shutil.copytree(repo / "bpf", copy / "bpf")
    shutil.copytree(repo / "maps", copy / "maps")
    shutil.copytree(repo / "dfxdp", copy / "dfxdp", ignore=shutil.ignore_patterns("_bpf", "*.so", "__pycache__"))
    (copy / "bpf" / "zz_broken.c").write_text("this is not C;\n")
    proc = subprocess.run([sys.executable, "-m", "dfxdp.build", "--kernels-only"], cwd=copy,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(copy)})
    assert proc.returncode == 1
    assert "clang failed on bpf/zz_broken.c" in proc.stderr and "error:" in proc.stderr


def test_two_bindings_side_by_side_force_a_rebuild(tree, monkeypatch):
    """pip's abi3 binding beside an older cpython-tagged one: Python would import the
    stale one, so the build replaces both by one fresh binding."""
    from dfxdp.datapath import libbpf_build

    package = tree / "pkg"
    (package / "datapath").mkdir(parents=True)
    (package / "datapath" / "libbpf_build.py").write_text("# inputs\n")
    stale, fresh = package / "_libbpf.cpython-311-x86_64-linux-gnu.so", package / "_libbpf.abi3.so"
    stale.write_text("old"), fresh.write_text("new")
    later = (package / "datapath" / "libbpf_build.py").stat().st_mtime + 10
    for so in (stale, fresh):
        os.utime(so, (later, later))
    compiled = tree / "build" / "_libbpf.cpython-311-x86_64-linux-gnu.so"

    def compile_stub(tmpdir, verbose):
        compiled.parent.mkdir(parents=True, exist_ok=True)
        compiled.write_text("rebuilt")
        return str(compiled)

    monkeypatch.setattr(build, "PACKAGE", package)
    monkeypatch.setattr(libbpf_build.ffibuilder, "compile", compile_stub)
    assert build.build_binding() is True
    assert sorted(p.name for p in package.glob("_libbpf*.so")) == [compiled.name]
    assert (package / compiled.name).read_text() == "rebuilt"
    assert build.build_binding() is False  # one binding, newer than its inputs
