"""Packaging. The build step compiles bpf/*.c with clang -target bpf into dfxdp/_bpf/
(shipped as package data) and the cffi libbpf binding (dfxdp._libbpf) against the
OS's libbpf. `controller/` is installed as `dfxdp.controller`."""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class BuildWithKernels(build_py):
    """Compile the XDP kernels before the Python files are collected."""

    def run(self):
        from dfxdp import build as kernels

        try:
            kernels.build_all()
        except kernels.BuildError as exc:
            raise SystemExit(f"error: {exc}") from None
        super().run()


def packages():
    found = []
    for root, dirs, files in os.walk("dfxdp"):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_")) and d != "__pycache__"]
        if "__init__.py" in files:
            found.append(root.replace(os.sep, "."))
    for root, dirs, files in os.walk("controller"):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" in files:
            found.append("dfxdp." + root.replace(os.sep, "."))
    return found


setup(
    name="dfxdp",
    version="0.1.0",
    description="Distributed network virtualization controller with an eBPF/XDP fast path",
    python_requires=">=3.11",
    packages=packages(),
    package_dir={"dfxdp": "dfxdp", "dfxdp.controller": "controller"},
    package_data={"dfxdp": ["_bpf/*.o", "_bpf/maps/*.h", "_bpf/lib/*.h", "_bpf/include/dfxdp/*.h"]},
    cffi_modules=["dfxdp/datapath/libbpf_build.py:ffibuilder"],
    setup_requires=["cffi>=1.16"],
    install_requires=[
        "cffi>=1.16",
        "fastapi>=0.110",
        "pydantic>=2.5",
        "uvicorn>=0.27",
        "uvloop>=0.19",  # the API server's event loop (uvicorn's loop="auto" takes it): less CPU per request
        "httpx>=0.27",
        "etcd3gw>=2.4",
        "orjson>=3.9",  # the API's large lists
        "os-ken>=4",
        "pyroute2>=0.7",
        "click>=8.1",
        "prometheus-client>=0.19",
        "matplotlib>=3.7",
        "rich>=13",
        "scapy>=2.5",
        "keystonemiddleware>=10",  # --auth keystone
        "oslo.config>=9",
        "oslo.policy>=4",
    ],
    extras_require={
        "test": ["pytest>=8", "openstacksdk>=3", "scapy>=2.5", "schemathesis>=4.0", "python-openstackclient>=6",
                 "python-octaviaclient>=3", "dnspython>=2.4",
                 # Tempest's network API tests against a real Keystone (tests/e2e/test_tempest.py)
                 "keystone>=25", "gunicorn>=21", "tempest>=40"],
    },
    entry_points={"console_scripts": ["dfxdp=dfxdp.cli.main:main"]},
    cmdclass={"build_py": BuildWithKernels},
)
