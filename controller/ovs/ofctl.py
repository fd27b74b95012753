"""The agent as its bridges' OpenFlow 1.3 controller, through os-ken.

os-ken runs in-process on its native hub (threads, no eventlet monkey-patching):
its OpenFlowController listens on `host:port` (the bridges' controller target is
tcp:host:port) and its OFPHandler does the handshake; `OpenFlowApp` keeps the
connected switches by datapath id and turns os-ken's asynchronous messages into
blocking calls for the agent's thread (`SwitchConnection`: dump flows, add,
delete, each answered or refused before it returns).

One controller per process: os-ken's configuration and its app registry are
process-wide. Its threads are started from a daemon thread, so they are daemon
threads too (a thread inherits the flag) and never keep a stopping agent alive.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Callable

os.environ.setdefault("OSKEN_HUB_TYPE", "native")  # read when os_ken.lib.hub is first imported

from os_ken import cfg  # noqa: E402
from os_ken.base import app_manager  # noqa: E402
from os_ken.controller import ofp_event, ofp_handler  # noqa: E402
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls  # noqa: E402
from os_ken.ofproto import nicira_ext  # noqa: E402
from os_ken.ofproto import ofproto_v1_3 as ofp  # noqa: E402
from os_ken.ofproto import ofproto_v1_3_parser as parser  # noqa: E402

from .flows import ALL_ONES, Flow, Installed  # noqa: E402

log = logging.getLogger(__name__)

REPLY_TIMEOUT = 10.0
NX_NAT_F_SRC = 1  # OVS's nicira-ext.h (os-ken names the ct flags, not the nat ones)
_MAX_PENDING_MODS = 200  # flow mods sent before waiting for a barrier (os-ken's send queue holds 16)


class OpenFlowError(OSError):
    """The switch went away or did not answer in time."""


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.items: list = []


class OpenFlowApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.switches: dict[int, object] = {}  # dpid -> os-ken Datapath, in MAIN state
        self.listeners: list[Callable[[int, bool], None]] = []
        self.packet_listeners: list[Callable[[int, int, int, bytes], None]] = []  # (dpid, cookie, in_port, frame)
        self._pending: dict[int, _Pending] = {}
        self._errors: dict[int, str] = {}  # xid -> error the switch sent back
        self._lock = threading.Lock()

    # ---- connection state ----
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev) -> None:
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.switches[dp.id] = dp
            log.info("switch %016x connected from %s", dp.id, dp.address)
        elif self.switches.get(dp.id) is dp:
            del self.switches[dp.id]
            log.warning("switch %016x disconnected", dp.id)
        else:
            return
        for listener in list(self.listeners):
            listener(dp.id, ev.state == MAIN_DISPATCHER)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev) -> None:
        msg = ev.msg
        for listener in list(self.packet_listeners):
            try:
                listener(msg.datapath.id, msg.cookie, msg.match["in_port"], bytes(msg.data))
            except Exception:  # noqa: BLE001 - a listener's bug must not stop os-ken's loop
                log.exception("packet-in listener failed")

    # ---- replies ----
    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, [MAIN_DISPATCHER, CONFIG_DISPATCHER])
    def _flow_stats(self, ev) -> None:
        pending = self._pending.get(ev.msg.xid)
        if pending is not None:
            pending.items.extend(ev.msg.body)
            if not ev.msg.flags & ofp.OFPMPF_REPLY_MORE:
                pending.done.set()

    @set_ev_cls(ofp_event.EventOFPBarrierReply, [MAIN_DISPATCHER, CONFIG_DISPATCHER])
    def _barrier(self, ev) -> None:
        pending = self._pending.get(ev.msg.xid)
        if pending is not None:
            pending.done.set()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [MAIN_DISPATCHER, CONFIG_DISPATCHER])
    def _error(self, ev) -> None:
        msg = ev.msg
        with self._lock:
            self._errors[msg.xid] = f"OpenFlow error type {msg.type} code {msg.code}"

    # ---- blocking calls for the agent's thread ----
    def request(self, dp, msg) -> list:
        """Send `msg` and wait for its whole (multipart) reply or barrier reply."""
        dp.set_xid(msg)
        pending = self._pending[msg.xid] = _Pending()
        try:
            if not dp.send_msg(msg):  # os-ken discards what is sent to a closing connection
                raise OpenFlowError(f"switch {dp.id:016x} is gone")
            if not pending.done.wait(REPLY_TIMEOUT):
                raise OpenFlowError(f"switch {dp.id:016x} did not answer {type(msg).__name__} "
                                    f"within {REPLY_TIMEOUT:.0f}s")
            return pending.items
        finally:
            del self._pending[msg.xid]

    def take_error(self, xid: int) -> str | None:
        with self._lock:
            return self._errors.pop(xid, None)


class SwitchConnection:
    """One connected bridge, driven synchronously (the `Switch` of controller/ovs/flows.py)."""

    def __init__(self, app: OpenFlowApp, dp):
        self.app, self.dp = app, dp

    def dump_flows(self) -> list[Installed]:
        req = parser.OFPFlowStatsRequest(self.dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch())
        return [Installed(stat.cookie, stat.table_id) for stat in self.app.request(self.dp, req)]

    def add_flows(self, flows: list[tuple[int, Flow]]) -> list[str]:
        return self._send_all([(flow_mod(self.dp, cookie, flow), str(flow)) for cookie, flow in flows])

    def delete_flows(self, flows: list[Installed]) -> list[str]:
        return self._send_all([(parser.OFPFlowMod(self.dp, cookie=f.cookie, cookie_mask=ALL_ONES, table_id=f.table,
                                                  command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY,
                                                  out_group=ofp.OFPG_ANY), f"delete {f.cookie:#x}")
                               for f in flows])

    def _send_all(self, mods: list[tuple[object, str]]) -> list[str]:
        """Send flow mods in chunks, each closed by a barrier: when it returns, the switch
        applied or refused every one; refusals come back as errors naming the flow."""
        errors = []
        for start in range(0, len(mods), _MAX_PENDING_MODS):
            chunk = mods[start:start + _MAX_PENDING_MODS]
            for msg, _ in chunk:
                self.dp.set_xid(msg)
                if not self.dp.send_msg(msg):
                    raise OpenFlowError(f"switch {self.dp.id:016x} is gone")
            self.app.request(self.dp, parser.OFPBarrierRequest(self.dp))
            for msg, what in chunk:
                error = self.app.take_error(msg.xid)
                if error:
                    errors.append(f"{what}: {error}")
        return errors


def flow_mod(dp, cookie: int, flow: Flow):
    """The OFPT_FLOW_MOD (add) for a desired flow."""
    actions, instructions = [], []
    for action in flow.actions:
        kind = action[0]
        if kind == "output":
            actions.append(parser.OFPActionOutput(action[1], ofp.OFPCML_NO_BUFFER))
        elif kind == "controller":
            actions.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER))
        elif kind == "set_field":
            actions.append(parser.OFPActionSetField(**{action[1]: action[2]}))
        elif kind == "output_reg":
            actions.append(parser.NXActionOutputReg(ofs_nbits=nicira_ext.ofs_nbits(0, 31), src=action[1], max_len=0))
        elif kind == "dec_ttl":
            actions.append(parser.OFPActionDecNwTtl())
        elif kind == "resubmit":
            actions.append(parser.NXActionResubmitTable(table_id=action[1]))  # in_port: the frame's own
        elif kind == "ct":
            _, commit, zone, table, snat_to = action
            nat = (parser.NXActionNAT(flags=NX_NAT_F_SRC, range_ipv4_min=snat_to, range_ipv4_max=snat_to)
                   if snat_to else parser.NXActionNAT(flags=0))
            actions.append(parser.NXActionCT(flags=nicira_ext.NX_CT_F_COMMIT if commit else 0, zone_src="", zone_ofs_nbits=zone,
                                             recirc_table=table, alg=0, actions=[nat]))
        elif kind == "metadata":
            instructions.append(parser.OFPInstructionWriteMetadata(action[1], ALL_ONES))
        elif kind == "goto":
            instructions.append(parser.OFPInstructionGotoTable(action[1]))
        else:
            raise ValueError(f"unknown flow action {action!r}")
    if actions:
        instructions.insert(0, parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
    return parser.OFPFlowMod(dp, cookie=cookie, table_id=flow.table, command=ofp.OFPFC_ADD, priority=flow.priority,
                             match=parser.OFPMatch(**dict(flow.match)), instructions=instructions)


class OpenFlowController:
    """The process' os-ken controller: start() once, then connection(dpid) per bridge."""

    _instance: "OpenFlowController | None" = None
    _instance_lock = threading.Lock()

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.app: OpenFlowApp | None = None

    @classmethod
    def shared(cls, host: str, port: int) -> "OpenFlowController":
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls(host, port)
                cls._instance._start()
            elif (cls._instance.host, cls._instance.port) != (host, port):
                raise ValueError(f"this process' OpenFlow controller listens on {cls._instance.host}:"
                                 f"{cls._instance.port}, not {host}:{port}")
            return cls._instance

    def _start(self) -> None:
        cfg.CONF.set_override("ofp_listen_host", self.host)
        cfg.CONF.set_override("ofp_tcp_listen_port", self.port)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:  # a daemon thread: every os-ken thread spawned from here is a daemon too
            try:
                manager = app_manager.AppManager.get_instance()
                handler = manager.instantiate(ofp_handler.OFPHandler)
                self.app = manager.instantiate(OpenFlowApp)
                self.app.start()
                handler.start()
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
            finally:
                started.set()

        threading.Thread(target=run, name="os-ken", daemon=True).start()
        started.wait()
        if failure:
            raise failure[0]
        log.info("OpenFlow controller (os-ken, native hub) listening on tcp:%s:%d", self.host, self.port)

    @property
    def target(self) -> str:
        """The bridges' controller column."""
        return f"tcp:{self.host}:{self.port}"

    def add_listener(self, listener: Callable[[int, bool], None]) -> None:
        """listener(dpid, connected) on every switch (dis)connection."""
        self.app.listeners.append(listener)

    def add_packet_listener(self, listener: Callable[[int, int, int, bytes], None]) -> None:
        """listener(dpid, cookie, in_port, frame) for every packet-in (a flow's to_controller())."""
        self.app.packet_listeners.append(listener)

    def connection(self, dpid: int) -> SwitchConnection | None:
        dp = self.app.switches.get(dpid)
        return SwitchConnection(self.app, dp) if dp is not None else None

