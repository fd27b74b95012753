"""Hook objects built from C source for tests and demos, the way a user builds one:
clang with the flags `dfxdp hook cflags` prints."""
from __future__ import annotations

import pathlib
import subprocess

from dfxdp.build import CLANG, clang_flags, hook_include_dirs


def build_hook(source: str, out_dir: pathlib.Path, name: str = "hook", defines: dict[str, str] | None = None
               ) -> pathlib.Path:
    """Compile `source` (C text) into out_dir/<name>.o; clang's message on failure."""
    src, obj = out_dir / f"{name}.c", out_dir / f"{name}.o"
    src.write_text(source)
    flags = [f"-D{k}={v}" for k, v in (defines or {}).items()]
    proc = subprocess.run([CLANG, *clang_flags(hook_include_dirs()), *flags, "-c", str(src), "-o", str(obj)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"clang failed on {name}.c:\n{proc.stderr.strip()}")
    return obj
