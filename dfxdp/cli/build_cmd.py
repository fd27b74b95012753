"""`dfxdp build`: compile the XDP kernels (same as `python -m dfxdp.build`)."""
from __future__ import annotations

import click


def register(group: click.Group) -> None:
    @group.command("build")
    @click.option("--force", is_flag=True, help="Rebuild even when objects are up to date.")
    def build(force: bool) -> None:
        """Compile bpf/*.c into the package's objects with clang -target bpf."""
        from dfxdp import build as builder

        try:
            built = builder.build_all(force=force)
        except builder.BuildError as exc:
            raise click.ClickException(str(exc)) from None
        for path, rebuilt in built:
            click.echo(f"{'built' if rebuilt else 'up to date'}: {path}")
