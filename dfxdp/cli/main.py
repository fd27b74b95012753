"""The `dfxdp` console script: one click group; each command lives in its own module.

A command module exposes `register(group)`; add it to COMMAND_MODULES to ship it.
User mistakes raise click.ClickException (one line on stderr, exit 1), never a traceback.
"""
from __future__ import annotations

import importlib

import click

COMMAND_MODULES = [
    "dfxdp.cli.build_cmd",
    "dfxdp.cli.demo",
    "dfxdp.cli.server",
    "dfxdp.cli.resources",
    "dfxdp.cli.agent",
    "dfxdp.cli.trace",
    "dfxdp.cli.hook",
    "dfxdp.cli.bench",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dfxdp")
def main() -> None:
    """dfxdp: distributed network virtualization with an XDP fast path."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main)


if __name__ == "__main__":
    main()
