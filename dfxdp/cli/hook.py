"""`dfxdp hook attach|detach|list|cflags`: user XDP programs in a chassis' hook slots."""
from __future__ import annotations

import json

import click


def _chassis_dir(chassis: str | None, bpffs: str | None) -> str:
    from dfxdp.datapath.pipeline import default_bpffs

    if bool(chassis) == bool(bpffs):
        raise click.UsageError("give the chassis (--chassis NAME) or its pins (--bpffs DIR), one of them")
    return bpffs or str(default_bpffs(chassis))


def _slots(chassis: str | None, bpffs: str | None):
    """The chassis' hook slots, locked for this command; HookError as a one-line error."""
    from dfxdp.datapath.hooks import HookError, HookSlots

    try:
        return HookSlots(_chassis_dir(chassis, bpffs))
    except HookError as exc:
        raise click.ClickException(str(exc)) from None


def _where(f):
    f = click.option("--bpffs", default=None, help="The chassis' pins (default /run/dfxdp/bpffs/CHASSIS).")(f)
    return click.option("--chassis", default=None, help="The chassis whose pipeline to change.")(f)


def register(group: click.Group) -> None:
    @group.group("hook")
    def hook() -> None:
        """User XDP programs in the pipeline's hook slots (after security groups, before the
        load balancer); see docs/hooks.md."""

    @hook.command("attach")
    @_where
    @click.option("--slot", type=int, default=None, help="Put it in this hook slot (hooks run in slot order).")
    @click.option("--priority", type=int, default=None,
                  help="Run it after hooks of lower or equal priority and before higher ones (default 50).")
    @click.option("--program", default=None, help="The program to load when the object holds several.")
    @click.argument("object_file", metavar="OBJECT.o")
    def attach(chassis, bpffs, slot, priority, program, object_file) -> None:
        """Verify OBJECT.o against the pipeline's contract, load it and plug it into a free
        hook slot of the live pipeline. Other traffic is not disturbed.

        \b
        Example: dfxdp hook attach --chassis ch1 --priority 10 drop_flow.o
        """
        from dfxdp.datapath.hooks import HookError

        if slot is not None and priority is not None:
            raise click.UsageError("--slot and --priority: give one of them")
        with _slots(chassis, bpffs) as slots:
            try:
                h = slots.attach(object_file, slot=slot, priority=priority, program=program)
            except HookError as exc:
                raise click.ClickException(str(exc)) from None
        click.echo(f"attached {h.name} in hook slot {h.index} ({h.stage}), priority {h.priority}, "
                   f"program id {h.prog_id}")

    @hook.command("detach")
    @_where
    @click.option("--slot", type=int, default=None, help="The hook slot to empty.")
    @click.argument("name", required=False)
    def detach(chassis, bpffs, slot, name) -> None:
        """Take the hook NAME (or the one in --slot) out of the pipeline; frames skip its slot."""
        from dfxdp.datapath.hooks import HookError

        if (slot is None) == (name is None):
            raise click.UsageError("give the hook's NAME or its --slot, one of them")
        with _slots(chassis, bpffs) as slots:
            try:
                h = slots.detach(slot=slot, name=name)
            except HookError as exc:
                raise click.ClickException(str(exc)) from None
        click.echo(f"detached {h.name} from hook slot {h.index} after {h.packets} packets")

    @hook.command("list")
    @_where
    @click.option("-f", "--format", "fmt", type=click.Choice(["text", "json"]), default="text")
    def list_cmd(chassis, bpffs, fmt) -> None:
        """The hooks of a chassis in run order: slot, priority, name, program id, packets seen."""
        with _slots(chassis, bpffs) as slots:
            hooks = slots.list()
        if fmt == "json":
            click.echo(json.dumps([h.as_dict() for h in hooks], indent=2))
            return
        click.echo(f"{'SLOT':<5}{'PRIORITY':<10}{'NAME':<24}{'PROG ID':<10}PACKETS")
        for h in hooks:
            prio = "-" if h.priority is None else h.priority
            click.echo(f"{h.index:<5}{prio!s:<10}{h.name:<24}{h.prog_id:<10}{h.packets}")

    @hook.command("cflags")
    def cflags() -> None:
        """clang flags to build a hook: clang $(dfxdp hook cflags) -c hook.c -o hook.o"""
        from dfxdp.build import clang_flags, hook_include_dirs

        click.echo(" ".join(clang_flags(hook_include_dirs())))
