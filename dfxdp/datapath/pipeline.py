"""The XDP pipeline of one chassis: load, pin, wire stages, attach, read counters.

Layout under the chassis' bpffs directory (default /run/dfxdp/bpffs/<chassis>):

    maps/<name>    every map, pinned by name (libbpf LIBBPF_PIN_BY_NAME)
    progs/<name>   every program: the entries xdp_port and xdp_underlay, the stages
    hooks/<name>   user programs in the hook slots (dfxdp/datapath/hooks.py), never
                   replaced or removed by a restarted agent

Loading reuses pinned maps, so a restarted agent keeps all datapath state; new
programs replace old ones slot by slot in the `stages` PROG_ARRAY and on each
interface atomically, so forwarding never stops (hitless restart).
"""
from __future__ import annotations

import logging
import os
import pathlib
import threading

from . import fastpath, libbpf
from .libbpf import BpfObject, Map, Program, ffi, lib

log = logging.getLogger(__name__)

OBJECT_DIR = pathlib.Path(__file__).resolve().parents[1] / "_bpf"
BPFFS_MOUNT = pathlib.Path("/run/dfxdp/bpffs")
ENTRY_OBJECT = "pipeline"
# the bench's floor, generator, sink and replay, the DHCP punt hook: objects that are not stages
NOT_PIPELINE = {"xdp_pass", "trafficgen", "trafficsink", "trafficgen_replay", "hook_punt_dhcp", "dns_reflect"}
ENTRIES = {"port": "xdp_port", "underlay": "xdp_underlay"}


def _enum(name: str) -> dict[str, int]:
    """An enum of maps/*.h as {name: value}, in value order."""
    return dict(sorted(ffi.typeof(name).relements.items(), key=lambda kv: kv[1]))


# The pipeline as maps/pipeline.h declares it (enum dfxdp_stage): nothing here restates it.
STAGES = _enum("enum dfxdp_stage")                      # STAGE_PORTSEC -> 0 …, pipeline order
STAGES.pop("STAGE_MAX")
ENTRY_STAGES = _enum("enum dfxdp_stage_entry")          # STAGE_ENTRY_PORT … (counted, not slots)
ENTRY_STAGES.pop("STAGE_STATS_MAX")
STAGE_STATS = {**ENTRY_STAGES, **STAGES}                # what a frame can pass, in the order it does
MANDATORY_STAGES = frozenset(name for name, slot in STAGES.items() if lib.STAGE_MANDATORY >> slot & 1)
HOOK_SLOTS = [slot for name, slot in STAGES.items() if name.startswith("STAGE_HOOK_")]
DROP_REASONS = _enum("enum dfxdp_drop_reason")
DROP_REASONS.pop("DROP_REASON_MAX")
STAGE_NAMES = {slot: name for name, slot in STAGE_STATS.items()}


def stage_slot(program_name: str) -> int | None:
    """Programs named stage_<slot> (stage_l2 -> STAGE_L2) plug into their slot; the
    hook slots belong to users (`dfxdp hook`), never to the pipeline's own objects."""
    if not program_name.startswith("stage_"):
        return None
    slot = STAGES.get("STAGE_" + program_name[len("stage_"):].upper())
    return None if slot in HOOK_SLOTS else slot


def object_path(name: str) -> pathlib.Path:
    return OBJECT_DIR / f"{name}.o"


def pipeline_objects() -> list[pathlib.Path]:
    """The entry object first (it creates the skeleton maps), then every stage object."""
    others = sorted(p for p in OBJECT_DIR.glob("*.o") if p.stem not in NOT_PIPELINE | {ENTRY_OBJECT})
    return [object_path(ENTRY_OBJECT), *others]


def counters_from(maps) -> dict[str, dict[str, dict[str, int]]]:
    """Summed per-CPU counters: {"stages": {...}, "verdicts": {...}, "drops": {...}}."""
    def table(map_name: str, names: dict[str, int]) -> dict[str, dict[str, int]]:
        m = maps[map_name]
        return {name: m.lookup_sum(slot) for name, slot in names.items()}

    return {
        "stages": table("stage_stats", STAGE_STATS),
        "verdicts": table("verdict_stats", dict(zip(libbpf.XDP_ACTIONS, range(5)))),
        "drops": table("drop_stats", DROP_REASONS),
    }


def pinned_counters(bpffs_dir: str | os.PathLike) -> dict[str, dict[str, dict[str, int]]]:
    """The counters of a running chassis, read from its pins (no agent needed)."""
    names = ("stage_stats", "verdict_stats", "drop_stats")
    maps = {name: Map.pinned(pathlib.Path(bpffs_dir) / "maps" / name) for name in names}
    try:
        return counters_from(maps)
    finally:
        for m in maps.values():
            m.close()


def default_bpffs(chassis: str) -> pathlib.Path:
    return BPFFS_MOUNT / chassis


def _serial_and_parallel(objects: list[BpfObject], declared: dict[BpfObject, set[str]],
                         pinned: set[str]) -> tuple[list[BpfObject], list[BpfObject]]:
    """(the objects to load one by one, in order; those to load in parallel after them). An
    object goes first when it creates a map (not pinned yet) that a later object declares too;
    the entry object always does (it creates the skeleton maps every stage shares)."""
    first, pinned = [], set(pinned)
    for i, obj in enumerate(objects):
        creates = declared[obj] - pinned
        if i == 0 or any(creates & declared[later] for later in objects[i + 1:]):
            first.append(obj)
            pinned |= declared[obj]
    return first, [obj for obj in objects if obj not in first]


def _load_in_threads(objects: list[BpfObject]) -> list[Exception]:
    """Load each object in its own thread; the errors of those refused, in the objects' order."""
    errors: dict[int, Exception] = {}

    def load(i: int, obj: BpfObject) -> None:
        try:
            obj.load()
        except Exception as exc:  # re-raised by the caller, in the caller's thread
            errors[i] = exc

    threads = [threading.Thread(target=load, args=(i, obj), name=f"load-{obj.path.stem}")
               for i, obj in enumerate(objects)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [errors[i] for i in sorted(errors)]


class Pipeline:
    def __init__(self, bpffs_dir: str | os.PathLike):
        self.dir = pathlib.Path(bpffs_dir)
        self.objects: list[BpfObject] = []
        self.programs: dict[str, Program] = {}
        self.maps: dict[str, Map] = {}
        # maps a new release declares differently from their pins: recreated empty
        self.replaced_maps: dict[str, str] = {}
        self._superseded: list[Map] = []  # the old maps of replaced_maps, held until close()
        self.live = False  # our programs pinned and in the stage slots

    @property
    def maps_dir(self) -> pathlib.Path:
        return self.dir / "maps"

    @property
    def progs_dir(self) -> pathlib.Path:
        return self.dir / "progs"

    @property
    def hooks_dir(self) -> pathlib.Path:
        return self.dir / "hooks"

    def load(self, objects: list[pathlib.Path] | None = None, go_live: bool = True) -> "Pipeline":
        """Load every object (reusing pinned maps), then go live — unless a pinned map had
        to be recreated for a new layout: then the caller fills the new maps first and
        calls go_live(), while the old programs keep forwarding with the old maps.
        go_live=False: the caller goes live itself (PipelineLoading).

        A new chassis' load is the kernel's: creating the maps (the entry object's, mostly) and
        verifying each object's programs. The objects whose maps are all pinned once those
        before them loaded are loaded in parallel threads (cffi releases the GIL in libbpf's
        calls). A map is created and pinned by one
        object only: the entry object, then any object declaring a map not pinned yet that a
        later object also declares, load one after the other first, so that no two loads race
        to create the same pin. The first object refused raises, after the others finished;
        nothing goes live then."""
        self._ensure_on_bpffs()
        self.maps_dir.mkdir(parents=True, exist_ok=True)
        self.progs_dir.mkdir(parents=True, exist_ok=True)
        opened = []
        for path in objects or pipeline_objects():
            obj = BpfObject(path, pin_root=self.maps_dir)
            self.objects.append(obj)
            opened.append(obj)
            self._replace_incompatible_pins(obj)
        first, rest = _serial_and_parallel(opened, {obj: set(obj.pinned_maps()) for obj in opened},
                                           {pin.name for pin in self.maps_dir.iterdir()})
        for obj in first:
            obj.load()
        errors = _load_in_threads(rest)
        for obj in opened:  # in the objects' order: a map's first declarer is its owner, as before
            self.programs.update(obj.programs)
            for name, m in obj.maps.items():
                self.maps.setdefault(name, m)
        if errors:
            raise errors[0]
        if go_live and not self.replaced_maps:
            self.go_live()
        return self

    def _replace_incompatible_pins(self, obj: BpfObject) -> None:
        """Unpin every map whose pin differs from what the new object declares (a new release
        changed its layout), so that load creates it anew instead of refusing to start. The
        old map stays open until close(): a PROG_ARRAY (`stages` grows with a new stage) loses
        its slots when its last pin and fd go, and the old programs forward through the old
        maps until the agent has the new ones attached."""
        for name, (path, changed) in obj.pinned_maps().items():
            if changed:
                log.warning("map %s changed layout (%s): recreated, to be refilled", name, ", ".join(changed))
                self._superseded.append(Map.pinned(path))
                libbpf.unpin(path)
                self.replaced_maps[name] = ", ".join(changed)

    def go_live(self) -> None:
        """Pin our programs and put them in the stage slots: from here on frames run them."""
        for name, prog in self.programs.items():
            pin = self.progs_dir / name
            libbpf.unpin(pin)  # the old program lives on while attached or in a slot
            prog.pin(pin)
        self._wire_stages()
        fastpath.invalidate(self.maps)  # what the old programs cached, the new ones decide again
        self.live = True

    def _ensure_on_bpffs(self) -> None:
        """Mount a bpffs where none is: at /run/dfxdp/bpffs for the default
        layout, else at the given directory itself."""
        if self.dir == BPFFS_MOUNT or BPFFS_MOUNT in self.dir.parents:
            libbpf.ensure_bpffs(BPFFS_MOUNT)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not libbpf.is_bpffs(self.dir):
            libbpf.ensure_bpffs(self.dir)

    def _wire_stages(self) -> None:
        """Our stage programs into their slots; slots of stages no longer built are
        cleared. Hook slots are left as they are (a restart keeps the user's hooks), or
        filled from the hooks' pins when an upgrade recreated the stage table."""
        stages = self.maps["stages"]
        loaded = set()
        for name, prog in self.programs.items():
            slot = stage_slot(name)
            if slot is not None:
                libbpf.prog_array_set(stages, slot, prog)
                loaded.add(slot)
        for slot in set(STAGES.values()) - loaded - set(HOOK_SLOTS):
            libbpf.prog_array_clear(stages, slot)  # a stage removed from the build
        if "stages" in self.replaced_maps:  # a new stage table: carry the users' hooks over
            from .hooks import replug_hooks  # hooks builds on this module

            replug_hooks(self.hooks_dir, stages)
        for name in sorted(MANDATORY_STAGES):
            if STAGES[name] not in loaded:
                log.error("mandatory stage %s has no program: every frame is dropped (DROP_STAGE_MISSING)", name)

    def entry(self, kind: str) -> Program:
        return self.programs[ENTRIES[kind]]

    def attach(self, ifindex: int, kind: str = "port", mode: str = "native") -> None:
        """Attach the entry for `kind` to ifindex (atomically replacing what is there)."""
        libbpf.xdp_attach(ifindex, self.entry(kind), mode)

    def detach(self, ifindex: int, mode: str = "native") -> None:
        libbpf.xdp_detach(ifindex, mode)

    def counters(self) -> dict[str, dict[str, dict[str, int]]]:
        return counters_from(self.maps)

    def close(self) -> None:
        """Release our fds; pinned maps/programs and attachments stay in the kernel."""
        for obj in self.objects:
            obj.close()
        for m in self._superseded:
            m.close()
        self._superseded.clear()
        self.objects.clear()
        self.programs.clear()
        self.maps.clear()

    def destroy(self) -> None:
        """Remove every pin of this chassis (after detaching its interfaces)."""
        self.close()
        for sub in (self.maps_dir, self.progs_dir, self.hooks_dir):
            if sub.is_dir():
                for pin in sub.iterdir():
                    libbpf.unpin(pin)
                sub.rmdir()
        if self.dir.is_dir() and not any(self.dir.iterdir()) and self.dir != BPFFS_MOUNT:
            try:
                self.dir.rmdir()
            except OSError:
                pass  # a mount point: leave it


class PipelineLoading:
    """A pipeline loading in a background thread: the kernel verifies its programs while the
    caller goes on (`dfxdp agent` imports the controller meanwhile; the two are most of a new
    chassis' start). result() waits and goes live; abandon(), for a caller that failed before
    taking the result, waits and unpins the maps this load created, so that a start which fails
    leaves nothing behind."""

    def __init__(self, bpffs_dir: str | os.PathLike, objects: list[pathlib.Path] | None = None):
        self.pipeline = Pipeline(bpffs_dir)
        self._objects = objects
        self._error: BaseException | None = None
        self._pinned_before: set[str] | None = None  # None: the load failed before it looked
        self._dirs_before = {d for d in (self.pipeline.dir, self.pipeline.maps_dir, self.pipeline.progs_dir)
                             if d.is_dir()}
        self._taken = False
        self._thread = threading.Thread(target=self._load, name="pipeline-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        try:
            maps_dir = self.pipeline.maps_dir
            self._pinned_before = set(os.listdir(maps_dir)) if maps_dir.is_dir() else set()
            self.pipeline.load(self._objects, go_live=False)
        except BaseException as exc:  # raised again by result(), in the caller's thread
            self._error = exc

    def result(self) -> Pipeline:
        """The loaded pipeline, live unless a map was recreated for a new layout (Pipeline.load)."""
        self._thread.join()
        if self._error is not None:
            self.pipeline.close()
            raise self._error
        self._taken = True
        if not self.pipeline.replaced_maps:
            self.pipeline.go_live()
        return self.pipeline

    def abandon(self) -> None:
        """The start failed before result(): nothing went live; unpin the maps this load made."""
        self._thread.join()
        if self._taken:
            return
        self.pipeline.close()
        if self._pinned_before is not None and self.pipeline.maps_dir.is_dir():
            for pin in self.pipeline.maps_dir.iterdir():
                if pin.name not in self._pinned_before:
                    libbpf.unpin(pin)
        for made in (self.pipeline.maps_dir, self.pipeline.progs_dir, self.pipeline.dir):
            if made not in self._dirs_before and made.is_dir() and not any(made.iterdir()):
                try:
                    made.rmdir()
                except OSError:
                    pass  # a bpffs the load mounted there: left mounted, as Pipeline.destroy does
