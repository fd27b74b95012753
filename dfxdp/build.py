"""The build step: compile every bpf/*.c with clang -target bpf into dfxdp/_bpf/.

    python -m dfxdp.build [--force]      (also run by `pip install`, `make bpf`)

Objects ship inside the package next to a copy of maps/*.h (the Python side
parses those at run time). A source is rebuilt only when it, or a header it
includes (clang's -MD dependency list), is newer than its object. A compile
error stops the build with clang's own message. With a source tree present,
`python -m dfxdp.build` also (re)builds the cffi libbpf binding in place.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shutil
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent
ROOT = PACKAGE.parent
BPF_SRC = ROOT / "bpf"
MAPS_SRC = ROOT / "maps"
OUT = PACKAGE / "_bpf"

CLANG = os.environ.get("CLANG", "clang")


class BuildError(Exception):
    pass


def _multiarch_include() -> list[str]:
    """<asm/types.h> lives in the multiarch include dir on Debian/Ubuntu."""
    for cmd in (["gcc", "-print-multiarch"], [CLANG, "-print-multiarch"]):
        try:
            triple = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            continue
        if triple and pathlib.Path("/usr/include", triple).is_dir():
            return ["-I", f"/usr/include/{triple}"]
    guess = pathlib.Path("/usr/include", f"{platform.machine()}-linux-gnu")
    return ["-I", str(guess)] if guess.is_dir() else []


def _deps_of(depfile: pathlib.Path) -> list[pathlib.Path]:
    """Files listed in a make-style dependency file written by clang -MD."""
    try:
        text = depfile.read_text()
    except OSError:
        return []
    body = text.replace("\\\n", " ").split(":", 1)[-1]
    return [pathlib.Path(p) for p in body.split()]


def _stale(src: pathlib.Path, obj: pathlib.Path, depfile: pathlib.Path) -> bool:
    if not obj.exists() or not depfile.exists():
        return True
    built = obj.stat().st_mtime
    deps = _deps_of(depfile) or [src]
    return any(not d.exists() or d.stat().st_mtime > built for d in deps)


def compile_one(src: pathlib.Path, obj: pathlib.Path, force: bool = False) -> bool:
    """Compile src into obj if needed; returns True when it ran clang."""
    depfile = obj.with_suffix(".d")
    if not force and not _stale(src, obj, depfile):
        return False
    if shutil.which(CLANG) is None:
        raise BuildError(f"{CLANG} not found: install clang (make deps) to build the XDP kernels")
    tmp = obj.with_suffix(".o.tmp")
    cmd = [CLANG, *clang_flags([ROOT, BPF_SRC]), "-Werror",
           "-MD", "-MF", str(depfile), "-c", str(src), "-o", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"clang failed on {src.relative_to(ROOT)}:\n{proc.stderr.strip()}")
    tmp.replace(obj)  # an interrupted build never leaves a half-written object
    return True


def _ship_headers() -> None:
    """Copy into the package the map contract (parsed by Python at run time) and what a
    user's hook is built against (bpf/include/dfxdp/hook.h and the bpf/lib/ it uses)."""
    shipped = {"maps": MAPS_SRC, "lib": BPF_SRC / "lib", "include/dfxdp": BPF_SRC / "include" / "dfxdp"}
    for sub, source in shipped.items():
        dest = OUT / sub
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("*.h"):
            if not (source / old.name).exists():
                old.unlink()
        for header in source.glob("*.h"):
            target = dest / header.name
            if not target.exists() or target.read_bytes() != header.read_bytes():
                shutil.copyfile(header, target)


def hook_include_dirs() -> list[pathlib.Path]:
    """What a hook's `#include <dfxdp/hook.h>` needs on clang's -I path: the source
    tree's directories, else the copies shipped inside the package."""
    if BPF_SRC.is_dir():
        return [ROOT, BPF_SRC, BPF_SRC / "include"]
    return [OUT, OUT / "include"]


def clang_flags(include_dirs: list[pathlib.Path]) -> list[str]:
    """clang's flags for an XDP object of this project (ours and users' hooks alike)."""
    return ["-O2", "-g", "-target", "bpf", "-Wall", *(f"-I{d}" for d in include_dirs), *_multiarch_include()]


def build_all(force: bool = False) -> list[tuple[pathlib.Path, bool]]:
    """Compile every bpf/*.c; returns (object, rebuilt) pairs."""
    if not BPF_SRC.is_dir():
        raise BuildError(f"no bpf/ sources next to {PACKAGE} (not a source tree)")
    OUT.mkdir(parents=True, exist_ok=True)
    _ship_headers()
    results = []
    for src in sorted(BPF_SRC.glob("*.c")):
        obj = OUT / (src.stem + ".o")
        results.append((obj, compile_one(src, obj, force)))
    wanted = {src.stem for src in BPF_SRC.glob("*.c")}
    for stale in OUT.glob("*.o"):
        if stale.stem not in wanted:  # a removed source must not keep shipping its object
            stale.unlink()
            stale.with_suffix(".d").unlink(missing_ok=True)
    return results


def build_binding(force: bool = False) -> bool:
    """Build dfxdp._libbpf in place when its inputs changed; True if rebuilt."""
    inputs = [PACKAGE / "datapath" / "libbpf_build.py", *MAPS_SRC.glob("*.h")]
    built = sorted(PACKAGE.glob("_libbpf*.so"))
    # Two builds (pip's abi3 one and ours) side by side: Python imports the cpython-tagged
    # one whatever its age, so only a single up-to-date binding counts as built.
    if not force and len(built) == 1 and all(i.stat().st_mtime <= built[0].stat().st_mtime for i in inputs):
        return False
    from dfxdp.datapath.libbpf_build import ffibuilder

    tmpdir = ROOT / "build" / "cffi"
    try:
        so = ffibuilder.compile(tmpdir=str(tmpdir), verbose=False)
    except Exception as exc:  # cffi raises VerificationError/CompileError with the compiler text
        raise BuildError(f"building the libbpf binding failed: {exc}") from exc
    for old in built:
        old.unlink()
    shutil.copy(so, PACKAGE / pathlib.Path(so).name)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dfxdp.build", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild everything")
    parser.add_argument("--kernels-only", action="store_true", help="skip the cffi binding")
    args = parser.parse_args(argv)
    try:
        for obj, rebuilt in build_all(args.force):
            print(f"{'built' if rebuilt else 'up to date'}: {obj.relative_to(ROOT)}")
        if not args.kernels_only:
            print(f"{'built' if build_binding(args.force) else 'up to date'}: dfxdp._libbpf")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
