"""The `dfxdp` console script: one click group; each command lives in its own module.

A command module exposes `register(group)`; add it to COMMANDS (or, for a resource kind's
command, declare the kind in dfxdp/nb/kinds.py) to ship it. A command's module is imported
when the command runs, not before: `dfxdp agent` does not pay the imports of the others
(the resource commands' NB models, the bench), and starts loading its pipeline sooner.
User mistakes raise click.ClickException (one line on stderr, exit 1), never a traceback.
"""
from __future__ import annotations

import importlib

import click

# command name -> the module that registers it
COMMANDS = {
    "build": "dfxdp.cli.build_cmd",
    "demo": "dfxdp.cli.demo",
    "server": "dfxdp.cli.server",
    "agent": "dfxdp.cli.agent",
    "trace": "dfxdp.cli.trace",
    "hook": "dfxdp.cli.hook",
    "bench": "dfxdp.cli.bench",
}
# every other command is a resource kind's (`dfxdp network list`), all registered by this module
RESOURCE_COMMANDS = "dfxdp.cli.resources"


class LazyGroup(click.Group):
    """A group that imports a command's module on first use of the command; listing the
    commands (`dfxdp --help`) imports them all."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._registered: set[str] = set()

    def _register(self, module: str) -> None:
        if module not in self._registered:
            self._registered.add(module)
            importlib.import_module(module).register(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for module in (*COMMANDS.values(), RESOURCE_COMMANDS):
            self._register(module)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._register(COMMANDS.get(name, RESOURCE_COMMANDS))
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dfxdp")
def main() -> None:
    """dfxdp: distributed network virtualization with an XDP fast path."""


if __name__ == "__main__":
    main()
