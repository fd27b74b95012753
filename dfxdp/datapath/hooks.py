"""User hook programs in the pipeline's hook slots (`dfxdp hook attach|detach|list`).

A hook is an XDP program built against bpf/include/dfxdp/hook.h and plugged into one of
the STAGE_HOOK_* slots of a chassis' live pipeline (maps/pipeline.h: after security-group
egress, before the load balancer). Hooks run in slot order. `attach` places a hook by its
priority (lower runs first, libxdp's convention; default 50) in a free slot after every
hook of lower or equal priority and before every hook of higher priority. A hook never
moves once attached: attaching and detaching change one slot each, atomically, so other
traffic is never disturbed.

Before a hook goes in, its object is checked against the pipeline's contract: an XDP
program (single-buffer, like the stages), GPL-compatible, built against hook.h (it shares
the pinned `stages` and `pkt_scratch` maps), every map it pins by name one of the
pipeline's with the same type and sizes, and a free slot where its priority belongs.
Anything else is refused with one line and nothing changes.

Pins: <bpffs>/hooks/<slot>_<priority>_<program> keeps each hook's program and what `list`
shows. The agent never clears a hook slot, so a restarted agent keeps the hooks; when an
upgrade recreates the stage table, the agent puts the pinned hooks back (replug_hooks).
"""
from __future__ import annotations

import fcntl
import logging
import os
import pathlib
import re
from dataclasses import dataclass

from . import fastpath, libbpf
from .libbpf import BpfError, BpfObject, Map, VerifierError, lib
from .pipeline import HOOK_SLOTS, STAGE_NAMES

log = logging.getLogger(__name__)

DEFAULT_PRIORITY = 50
REQUIRED_MAPS = ("stages", "pkt_scratch")  # a hook continues the pipeline with the frame's metadata


class HookError(Exception):
    """A hook cannot be attached or detached; the message is one line for the user."""


@dataclass
class Hook:
    index: int             # hook slot 0 … len(HOOK_SLOTS) - 1, in run order
    priority: int | None   # None: put in its slot by something other than `attach`
    name: str
    prog_id: int
    packets: int           # frames that entered the slot since the hook was attached

    @property
    def stage(self) -> str:
        return STAGE_NAMES[HOOK_SLOTS[self.index]]

    def as_dict(self) -> dict:
        return {"slot": self.index, "stage": self.stage, "priority": self.priority, "name": self.name,
                "prog_id": self.prog_id, "packets": self.packets}


def choose_slot(occupied: dict[int, int | None], priority: int) -> int:
    """The hook slot for a new hook of `priority`, given {slot: priority} of the hooks in
    place (None counts as the default): a free slot after every hook of lower or equal
    priority and before every higher one, in the middle of that gap to leave room on
    both sides for later hooks."""
    def prio(slot: int) -> int:
        p = occupied[slot]
        return DEFAULT_PRIORITY if p is None else p

    after = [s for s in occupied if prio(s) <= priority]
    before = [s for s in occupied if prio(s) > priority]
    low = max(after) + 1 if after else 0
    high = min(before) - 1 if before else len(HOOK_SLOTS) - 1
    free = [s for s in range(low, high + 1) if s not in occupied]
    if not free:
        if len(occupied) == len(HOOK_SLOTS):
            raise HookError(f"all {len(HOOK_SLOTS)} hook slots are taken: detach a hook first")
        raise HookError(f"no free hook slot between the hooks of priority <= {priority} and > {priority}: "
                        f"choose another --priority or a free --slot")
    return free[(len(free) - 1) // 2]


def _pin_name(index: int, priority: int, program: str) -> str:
    return f"{index}_{priority}_{program}"


_PIN = re.compile(r"(\d+)_(-?\d+)_(\w+)")


def pinned_hooks(hooks_dir: pathlib.Path) -> dict[int, tuple[pathlib.Path, int, str]]:
    """{hook slot: (pin, priority, program name)} of the hooks pinned by attach."""
    pins = {}
    for pin in hooks_dir.iterdir() if hooks_dir.is_dir() else ():
        parsed = _PIN.fullmatch(pin.name)
        if parsed:  # anything else there is not ours to read
            pins[int(parsed[1])] = (pin, int(parsed[2]), parsed[3])
    return pins


def replug_hooks(hooks_dir: pathlib.Path, stages: Map) -> None:
    """Put the pinned hooks into a new stage table (an upgrade recreated `stages`)."""
    for index, (pin, _, name) in sorted(pinned_hooks(hooks_dir).items()):
        if index >= len(HOOK_SLOTS):
            log.error("hook %s was in slot %d, which this release does not have: detach it", name, index)
            continue
        prog = libbpf.Program.pinned(pin)
        try:
            libbpf.prog_array_set(stages, HOOK_SLOTS[index], prog)
        except BpfError as exc:
            log.error("hook %s could not go back into slot %d (%s): attach it again", name, index, exc)
        finally:
            prog.close()


class HookSlots:
    """The hook slots of one chassis, opened from its pins (no agent needed)."""

    def __init__(self, bpffs_dir: str | os.PathLike):
        self.dir = pathlib.Path(bpffs_dir)
        self.maps_dir = self.dir / "maps"
        self.hooks_dir = self.dir / "hooks"
        if not (self.maps_dir / "stages").exists():
            raise HookError(f"no pinned dfxdp pipeline under {self.dir} (is the agent running there?)")
        self.stages = Map.pinned(self.maps_dir / "stages")
        self.stage_stats = Map.pinned(self.maps_dir / "stage_stats")
        # flows the fast path forwards skip the hook slots: a plugged or removed hook invalidates them
        gen = self.maps_dir / fastpath.GENERATION_MAP
        self.fast_maps = {fastpath.GENERATION_MAP: Map.pinned(gen)} if gen.exists() else {}
        self.hooks_dir.mkdir(exist_ok=True)
        # one attach/detach at a time per chassis: two could otherwise pick the same slot
        self._lock_fd = os.open(self.hooks_dir, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        self.stages.close()
        self.stage_stats.close()
        for m in self.fast_maps.values():
            m.close()
        os.close(self._lock_fd)

    def __enter__(self) -> "HookSlots":
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self.close()

    # ---- reading ---------------------------------------------------------------
    def _pins(self) -> dict[int, tuple[pathlib.Path, int, str]]:
        return pinned_hooks(self.hooks_dir)

    def list(self) -> list[Hook]:
        """The hooks in their slots, in run order."""
        pins = self._pins()
        hooks = []
        for index, slot in enumerate(HOOK_SLOTS):
            prog_id = self.stages.lookup(slot)
            if prog_id is None:
                continue
            if index in pins:
                _, priority, name = pins[index]
            else:  # put there by other means (tests, bpftool): named by the kernel
                prog = libbpf.prog_by_id(prog_id)
                try:
                    priority, name = None, libbpf.prog_info(prog).name
                finally:
                    prog.close()
            hooks.append(Hook(index, priority, name, prog_id, self.stage_stats.lookup_sum(slot)["packets"]))
        return hooks

    # ---- attach ----------------------------------------------------------------
    def attach(self, object_path: str | os.PathLike, slot: int | None = None, priority: int | None = None,
               program: str | None = None) -> Hook:
        """Verify the object, load its program and plug it into a free hook slot."""
        path = pathlib.Path(object_path)
        if not path.is_file():
            raise HookError(f"{path}: no such object file")
        current = {h.index: h.priority for h in self.list()}
        if slot is not None and not 0 <= slot < len(HOOK_SLOTS):
            raise HookError(f"--slot {slot}: hook slots are 0 to {len(HOOK_SLOTS) - 1}")
        if slot is not None and slot in current:
            raise HookError(f"hook slot {slot} is taken: detach its hook first or choose another")
        priority = DEFAULT_PRIORITY if priority is None else priority
        index = slot if slot is not None else choose_slot(current, priority)
        try:
            obj = BpfObject(path, pin_root=self.maps_dir)
        except BpfError as exc:
            raise HookError(f"{path}: not a BPF object ({exc.strerror})") from None
        with obj:
            name = self._verify(obj, path, program)
            obj.load_only(name)
            try:
                obj.load()
            except VerifierError as exc:
                last = [line for line in exc.log.splitlines() if line.strip()][-1:] or [exc.strerror]
                raise HookError(f"{path}: the kernel refused program {name}: {last[0].strip()}") from None
            prog = obj.programs[name]
            if not libbpf.prog_info(prog).gpl_compatible:
                raise HookError(f"{path}: program {name} is not GPL-compatible (char _license[] SEC(\"license\")): "
                                f"it would run inside the GPL pipeline")
            self._plug(index, priority, prog)
        return next(h for h in self.list() if h.index == index)

    def _verify(self, obj: BpfObject, path: pathlib.Path, program: str | None) -> str:
        """The program to load, once the object meets the pipeline's contract."""
        declared = obj.declared_programs()
        if program is None:
            if len(declared) != 1:
                raise HookError(f"{path}: holds {len(declared)} programs ({', '.join(sorted(declared)) or 'none'}): "
                                f"choose one with --program")
            program = next(iter(declared))
        if program not in declared:
            raise HookError(f"{path}: no program {program} (it holds {', '.join(sorted(declared))})")
        prog_type, section = declared[program]
        if prog_type != lib.BPF_PROG_TYPE_XDP:
            raise HookError(f"{path}: program {program} is not an XDP program (SEC(\"xdp\"))")
        if section.startswith("xdp.frags"):
            raise HookError(f"{path}: program {program} is multi-buffer (SEC(\"xdp.frags\")); the pipeline's "
                            f"stages are single-buffer: use SEC(\"xdp\")")
        pinned = obj.pinned_maps()
        for name, (_, changed) in sorted(pinned.items()):
            if changed is None:
                raise HookError(f"{path}: pins a map {name} that the pipeline does not have: a hook may only "
                                f"share the pipeline's maps (leave its own maps unpinned)")
            if changed:
                raise HookError(f"{path}: its map {name} differs from the pipeline's ({', '.join(changed)}): "
                                f"rebuild it against this release's dfxdp/hook.h")
        missing = [name for name in REQUIRED_MAPS if name not in pinned]
        if missing:
            raise HookError(f"{path}: not built against dfxdp/hook.h (no pinned {', '.join(missing)}): it "
                            f"could not continue the pipeline")
        return program

    def _plug(self, index: int, priority: int, prog: libbpf.Program) -> None:
        slot = HOOK_SLOTS[index]
        stale = self._pins().get(index)  # a pin left behind when the slot was cleared by other means
        if stale:
            libbpf.unpin(stale[0])
        # the slot is empty: nothing counts in it now, so the new hook's count starts at zero
        self.stage_stats.update(slot, {"packets": 0, "bytes": 0})
        pin = self.hooks_dir / _pin_name(index, priority, prog.name)
        prog.pin(pin)
        try:
            libbpf.prog_array_set(self.stages, slot, prog)
        except BpfError as exc:
            libbpf.unpin(pin)
            raise HookError(f"the pipeline's stages refuse program {prog.name} ({exc.strerror})") from None
        fastpath.invalidate(self.fast_maps)

    # ---- detach ----------------------------------------------------------------
    def detach(self, slot: int | None = None, name: str | None = None) -> Hook:
        """Take a hook out of its slot (chosen by slot or by name); frames skip the slot from then on."""
        hooks = self.list()
        if slot is not None:
            chosen = [h for h in hooks if h.index == slot]
            what = f"hook slot {slot}"
        else:
            chosen = [h for h in hooks if h.name == name]
            what = f"hook {name}"
        if not chosen:
            attached = ", ".join(f"{h.name} (slot {h.index})" for h in hooks) or "none"
            raise HookError(f"no {what} attached (attached: {attached})")
        if len(chosen) > 1:
            raise HookError(f"{len(chosen)} hooks are named {name}: choose one with --slot")
        hook = chosen[0]
        libbpf.prog_array_clear(self.stages, HOOK_SLOTS[hook.index])
        fastpath.invalidate(self.fast_maps)
        pin = self._pins().get(hook.index)
        if pin:
            libbpf.unpin(pin[0])
        return hook
