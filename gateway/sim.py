"""The sandbox SMSC: our own ``Session`` in the SMSC role, on trio.

A product feature, not only a test helper: the built-in carrier of ``make run`` (the
``[sandbox]`` config section) and a tool users point their own tests at (``smsgw sim``).

What it does, per connection (same reader / writer / ticker shape as ``gateway.bind``):
- binds: accounts checked (unknown system_id -> ESME_RINVSYSID, wrong password ->
  ESME_RINVPASWD, over ``max_binds`` -> ESME_RBINDFAIL);
- submit_sm: answered with a unique message_id (hex or decimal), or with
  ``throttle_status`` when over ``tps`` (per account), or ``fail_status`` for a random
  ``fail_rate`` fraction; optional ``resp_delay``;
- delivery receipts for accepted submits that ask for one (registered_delivery & 3, with
  the simulator's meaning of 3 = success only): a deliver_sm with esm_class 0x04, the
  Appendix B text, and the receipted_message_id and message_state TLVs, after
  ``dlr_delay`` (+ jitter) with a configurable stat mix. A receipt goes to the bind that
  submitted if it can receive, else to any receiver of the account, else waits;
- MO injection: ``await server.inject_mo(...)`` in-process;
- fault injection: ``drop_all()``, ``unbind_all()``, ``freeze_all()``, ``drop_after``
  (cut a session at its Nth submit without answering it), SMSC-sent enquire_link.
- deliver_sm still unanswered when a connection ends are re-sent later on another bind
  (at-least-once, as real SMSCs do).

The same controls over HTTP when ``control_port`` is set (JSON, on ``host`` only):
``POST /mo`` ``{"source_addr", "destination_addr", "text" | "short_message_hex",
"system_id"?, "data_coding"?}`` -> 202 ``{"queued": parts}``; ``POST /drop``, ``/unbind``,
``/freeze`` -> ``{"sessions": n}``; ``GET /stats`` (the counters), ``GET /sessions``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import heapq
import itertools
import logging
import math
import random
import socket
import ssl
import struct
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import msgspec
import trio
import trio.testing

from gateway.smpp import events as ev
from gateway.smpp import pdu as P
from gateway.smpp.constants import CommandStatus, MessageState, Tag
from gateway.smpp.session import Role, Session, SessionConfig
from gateway.smpp.state import SessionState
from gateway.throttle import TokenBucket

if TYPE_CHECKING:
    from gateway.http import Request, Response

__all__ = ["DlrStat", "MoRequest", "SessionInfo", "SimServer", "SimSettings", "SimStats",
           "run_sim"]

log = logging.getLogger("smsgw.sim")

RECEIVE_SIZE = 256 * 1024

_STATES: dict[str, int] = {
    "ENROUTE": MessageState.ENROUTE,
    "DELIVRD": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "ACCEPTD": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
}
_SUCCESS = {"DELIVRD", "ACCEPTD", "ENROUTE"}


class DlrStat(msgspec.Struct, frozen=True):
    """One entry of the receipt stat mix: ``stat`` with relative ``weight`` and ``err``."""

    stat: str = "DELIVRD"
    weight: float = 1.0
    err: str | None = None  # default: 000 for success stats, 001 otherwise


class SimSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The simulator's knobs (seconds for times)."""

    host: str = "127.0.0.1"
    port: int = 2775  # 0 = ephemeral (read SimServer.port after start)
    accounts: dict[str, str] = msgspec.field(default_factory=lambda: {"sandbox": "sandbox"})
    smsc_id: str = "SMSGWSIM"
    max_binds: int = 0  # per system_id; 0 = any number
    dlr_delay: float = 0.1
    dlr_jitter: float = 0.0
    dlr_stats: tuple[DlrStat, ...] = (DlrStat(),)
    tps: float = 0.0  # accepted submit_sm per second per account; 0 = no limit
    throttle_status: int = CommandStatus.RTHROTTLED
    fail_rate: float = 0.0
    fail_status: int = CommandStatus.RSYSERR
    resp_delay: float = 0.0
    msgid: Literal["hex", "dec"] = "hex"
    msgid_start: int | None = None
    #: "dec": the receipt text's id: is the decimal form of a hex message_id while the
    #: receipted_message_id TLV keeps the hex (a common carrier quirk, domain.md §1.8).
    dlr_text_id: Literal["same", "dec"] = "same"
    #: Add network_error_code (0x0423: 03 = GSM + err as u16) to failed receipts.
    dlr_network_error: bool = False
    enquire_link: float = 0.0  # the SMSC sends enquire_link when idle this long; 0 = off
    response_timeout: float = 10.0
    bind_timeout: float = 30.0
    deliver_window: int = 64
    drop_after: int = 0  # cut a session when it receives its Nth submit_sm (unanswered)
    seed: int | None = None
    certfile: str | None = None  # TLS when set (with keyfile)
    keyfile: str | None = None
    control_port: int | None = None  # HTTP control endpoint on host; 0 = ephemeral; None = off


class SimStats(msgspec.Struct, kw_only=True):
    """Counters (``SimServer.stats``); names follow the node simulator's."""

    connections: int = 0
    bound_sessions: int = 0
    binds: int = 0
    bind_failures: int = 0
    unbinds: int = 0
    submits: int = 0
    submits_ok: int = 0
    throttled: int = 0
    failed: int = 0
    drops: int = 0
    dlrs_sent: int = 0
    dlrs_acked: int = 0
    dlrs_nacked: int = 0
    dlrs_requeued: int = 0
    mo_sent: int = 0
    mo_acked: int = 0
    mo_nacked: int = 0
    pending_deliver: int = 0


class MoRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /mo`` on the control endpoint."""

    source_addr: str
    destination_addr: str
    text: str | None = None
    short_message_hex: str | None = None
    system_id: str | None = None
    data_coding: int | None = None


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``GET /sessions``."""

    session: int
    system_id: str | None
    can_submit: bool
    can_receive: bool
    submits: int
    pending_deliver: int
    inflight_deliver: int


_MO_DECODER = msgspec.json.Decoder(MoRequest)


class _Delivery:
    """A deliver_sm waiting for, or on, a connection."""

    __slots__ = ("is_mo", "pdu", "preferred", "system_id")

    def __init__(self, pdu: P.DeliverSm, system_id: str, preferred: _Conn | None,
                 is_mo: bool) -> None:
        self.pdu = pdu
        self.system_id = system_id
        self.preferred = preferred
        self.is_mo = is_mo


_BIND_RESP: dict[type[P.Pdu], type[P.Pdu]] = {
    P.BindTransmitter: P.BindTransmitterResp,
    P.BindReceiver: P.BindReceiverResp,
    P.BindTransceiver: P.BindTransceiverResp,
}


class _Conn:
    """One ESME connection to the simulator."""

    def __init__(self, server: SimServer, stream: trio.abc.Stream, number: int) -> None:
        self.server = server
        self.stream = stream
        self.number = number
        s = server.settings
        self.session = Session(Role.SMSC, SessionConfig(
            window=s.deliver_window,
            response_timeout=s.response_timeout,
            enquire_link_interval=s.enquire_link,
            bind_timeout=s.bind_timeout,
        ), now=trio.current_time())
        self.system_id: str | None = None
        self.can_receive = False
        self.can_submit = False
        self.submits = 0
        self.pending: deque[_Delivery] = deque()
        self.inflight: dict[int, _Delivery] = {}
        self.delayed: deque[tuple[float, int, P.SubmitSmResp, int]] = deque()
        self.wake = trio.Event()
        self.tick_wake = trio.Event()
        self.cancel = trio.CancelScope()
        self.unbinding = False
        self.dropping = False
        self.frozen = False
        self.closed = False

    @property
    def bound(self) -> bool:
        return self.system_id is not None and not self.closed

    def poke(self) -> None:
        self.wake.set()

    def offer(self, d: _Delivery) -> None:
        self.pending.append(d)
        self.wake.set()

    async def serve(self) -> None:
        with self.cancel:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader)
                nursery.start_soon(self._writer)
                nursery.start_soon(self._ticker)

    def close(self) -> None:
        self.cancel.cancel()

    async def _reader(self) -> None:
        session = self.session
        while True:
            try:
                data = await self.stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            if self.frozen:
                await trio.sleep_forever()
            now = trio.current_time()
            session.receive_data(bytes(data), now)
            self._dispatch(session.events(), now)
            self.wake.set()
            if not data or session.state in (SessionState.CLOSED, SessionState.ERROR):
                self.close()
                return

    def _dispatch(self, events: list[ev.Event], now: float) -> None:
        server = self.server
        stats = server.stats
        for event in events:
            if self.dropping:
                return
            if isinstance(event, ev.RequestReceived):
                pdu = event.pdu
                if isinstance(pdu, P.SubmitSm):
                    self._on_submit(event.seq, pdu, now)
                elif isinstance(pdu, P.BindTransmitter | P.BindReceiver | P.BindTransceiver):
                    self._on_bind(event.seq, pdu)
                elif isinstance(pdu, P.Outbind | P.AlertNotification):
                    pass
                else:
                    self._reply_invalid(event.seq, pdu)
            elif isinstance(event, ev.ResponseReceived):
                d = self.inflight.pop(event.seq, None)
                if d is not None:
                    ok = event.status == 0
                    if d.is_mo:
                        if ok:
                            stats.mo_acked += 1
                        else:
                            stats.mo_nacked += 1
                    elif ok:
                        stats.dlrs_acked += 1
                    else:
                        stats.dlrs_nacked += 1
            elif isinstance(event, ev.ResponseTimedOut | ev.RequestAbandoned):
                d = self.inflight.pop(event.seq, None)
                if d is not None:
                    stats.dlrs_requeued += 1
                    server._requeue(d)
            elif isinstance(event, ev.Unbound):
                stats.unbinds += 1
                self.close_soon()
            elif isinstance(event, ev.LinkDead | ev.ConnectionClosed):
                self.close_soon()

    def close_soon(self) -> None:
        """Flush what the session queued (unbind_resp), then close."""
        self.unbinding = True
        self.wake.set()

    def _reply_invalid(self, seq: int, pdu: P.Pdu) -> None:
        resp_cls = P.PDU_TYPES.get(int(pdu.command_id) | 0x80000000)
        if resp_cls is not None:
            try:
                self.session.send_response(seq, resp_cls(), CommandStatus.RINVCMDID)  # type: ignore[call-arg]
            except Exception:  # a resp with mandatory fields: nack instead
                self.session.send_response(seq, P.GenericNack(), CommandStatus.RINVCMDID)

    def _on_bind(self, seq: int, pdu: P.BindTransmitter | P.BindReceiver | P.BindTransceiver,
                 ) -> None:
        server = self.server
        s = server.settings
        resp_cls = _BIND_RESP[type(pdu)]
        status = 0
        if pdu.system_id not in s.accounts:
            status = CommandStatus.RINVSYSID
        elif s.accounts[pdu.system_id] != pdu.password:
            status = CommandStatus.RINVPASWD
        elif s.max_binds and server._binds_of(pdu.system_id) >= s.max_binds:
            status = CommandStatus.RBINDFAIL
        if status:
            server.stats.bind_failures += 1
            self.session.send_response(seq, resp_cls(system_id=s.smsc_id), status)  # type: ignore[call-arg]
            return
        self.session.send_response(seq, resp_cls(system_id=s.smsc_id))  # type: ignore[call-arg]
        self.system_id = pdu.system_id
        self.can_submit = not isinstance(pdu, P.BindReceiver)
        self.can_receive = not isinstance(pdu, P.BindTransmitter)
        server.stats.binds += 1
        server._bound(self)

    def _on_submit(self, seq: int, pdu: P.SubmitSm, now: float) -> None:
        server = self.server
        s = server.settings
        stats = server.stats
        stats.submits += 1
        self.submits += 1
        if s.drop_after and self.submits >= s.drop_after:
            # Like the node simulator: this submit is not answered, the ones before it
            # are (the writer flushes them, then cuts), anything after it is discarded.
            stats.drops += 1
            self.dropping = True
            self.wake.set()
            return
        status = 0
        resp = _EMPTY_RESP
        if not self.can_submit:
            status = CommandStatus.RINVBNDSTS
        else:
            bucket = server._bucket(self.system_id or "")
            if bucket is not None and bucket.take(1, now) == 0:
                status = s.throttle_status
                stats.throttled += 1
            elif s.fail_rate and server.rng.random() < s.fail_rate:
                status = s.fail_status
                stats.failed += 1
        if status == 0:
            stats.submits_ok += 1
            message_id = server._next_id()
            resp = P.SubmitSmResp(message_id=message_id)
            if pdu.registered_delivery & 3:
                server._schedule_receipt(self, pdu, message_id, now)
        if s.resp_delay > 0:
            self.delayed.append((now + s.resp_delay, seq, resp, status))
            self.tick_wake.set()
        else:
            self.session.send_response(seq, resp, status)

    async def _writer(self) -> None:
        session = self.session
        stream = self.stream
        try:
            while True:
                now = trio.current_time()
                delayed = self.delayed
                while delayed and delayed[0][0] <= now:
                    _, seq, resp, status = delayed.popleft()
                    session.send_response(seq, resp, status)
                if self.pending and self.bound and not self.unbinding and not self.dropping:
                    room = session.window_free()
                    if room > 0:
                        stats = self.server.stats
                        while self.pending and room > 0:
                            d = self.pending.popleft()
                            seq = session.send_request(d.pdu, now)
                            self.inflight[seq] = d
                            room -= 1
                            if d.is_mo:
                                stats.mo_sent += 1
                            else:
                                stats.dlrs_sent += 1
                        self.tick_wake.set()
                if self.frozen:
                    await trio.sleep_forever()
                data = session.data_to_send()
                if data:
                    await stream.send_all(data)
                    continue
                if self.dropping:
                    self.server._drop(self)
                    return
                if self.unbinding:
                    await trio.sleep(0.05)  # let the peer read the last bytes before close
                    self.close()
                    return
                if self.wake.is_set():
                    self.wake = trio.Event()
                    continue
                until = delayed[0][0] if delayed else math.inf
                with trio.move_on_at(until):
                    await self.wake.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.close()

    async def _ticker(self) -> None:
        session = self.session
        while True:
            deadline = session.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await self.tick_wake.wait()
            if self.tick_wake.is_set():
                self.tick_wake = trio.Event()
            now = trio.current_time()
            session.tick(now)
            self._dispatch(session.events(), now)
            self.wake.set()
            nd = session.next_deadline()
            if nd is not None and nd <= now:
                await trio.sleep(0.01)

    def request_unbind(self) -> None:
        if self.bound and not self.unbinding:
            self.session.send_request(P.Unbind(), trio.current_time())
            self.wake.set()


_EMPTY_RESP = P.SubmitSmResp()


class SimServer:
    """The simulator: ``await nursery.start(server.run)``, then bind to ``server.port``."""

    def __init__(self, settings: SimSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        self.rng = random.Random(self.settings.seed)
        self.stats = SimStats()
        self.port: int = self.settings.port
        self.conns: list[_Conn] = []
        self._numbers = itertools.count(1)
        s = self.settings
        start = s.msgid_start if s.msgid_start is not None else self.rng.randrange(1 << 40)
        self._ids = itertools.count(start)
        self._buckets: dict[str, TokenBucket] = {}
        self._receipts: list[tuple[float, int, _Delivery]] = []
        self._receipt_order = itertools.count()
        self._held: deque[_Delivery] = deque()
        self._receipt_wake = trio.Event()
        self._rr = 0
        self._nursery: trio.Nursery | None = None
        self.control_port: int | None = None
        self._mo_ref = 0
        total = sum(x.weight for x in s.dlr_stats) or 1.0
        acc = 0.0
        self._mix: list[tuple[float, DlrStat]] = []
        for x in s.dlr_stats:
            acc += x.weight / total
            self._mix.append((acc, x))

    # -- control (in-process) ------------------------------------------------------------

    async def inject_mo(
        self,
        source_addr: str,
        destination_addr: str,
        text: str | bytes,
        *,
        system_id: str | None = None,
        data_coding: int | None = None,
        tlvs: Sequence[P.Tlv] = (),
    ) -> int:
        """Queue an MO from a handset for a receiver of ``system_id``; returns the parts.

        A ``str`` is encoded as a phone would: GSM 03.38 (unpacked) when it fits, else
        UCS-2, split with an 8-bit concatenation UDH when long (gateway.encoding.plan).
        ``bytes`` go out as they are (``data_coding`` default 4, 8-bit data).
        """
        bodies: list[tuple[bytes, int]]
        if isinstance(text, str):
            from gateway.encoding import DEFAULT_OPTIONS, PlanRejected, plan

            self._mo_ref = (self._mo_ref + 1) & 0xFF
            planned = plan(text, DEFAULT_OPTIONS, ref=self._mo_ref, smart=False)
            if isinstance(planned, PlanRejected):
                raise ValueError(f"cannot encode MO text: {planned.message}")
            dc = planned.data_coding if data_coding is None else data_coding
            bodies = [(part.short_message, part.esm_class) for part in planned.parts]
        else:
            dc = 4 if data_coding is None else data_coding
            bodies = [(text, 0)]
        sid = system_id or next(iter(self.settings.accounts))
        for body, esm_class in bodies:
            tl = tuple(tlvs)
            short = body
            if len(body) > 254:
                tl += (P.message_payload_tlv(body),)
                short = b""
            pdu = P.DeliverSm(source_addr_ton=1, source_addr_npi=1, source_addr=source_addr,
                              destination_addr=destination_addr, esm_class=esm_class,
                              data_coding=dc, short_message=short, tlvs=tl)
            self._route(_Delivery(pdu, sid, None, True))
        await trio.lowlevel.checkpoint()
        return len(bodies)

    def drop_all(self) -> int:
        """Cut every connection abruptly (TCP RST when possible); returns how many."""
        n = 0
        for c in list(self.conns):
            self.stats.drops += 1
            self._drop(c)
            n += 1
        return n

    def freeze_all(self) -> int:
        """Stop reading and answering on every connection, but keep them open.

        A hung SMSC or a black-holed link: only the ESME's enquire_link / response
        timers can tell. Returns how many connections froze.
        """
        for c in self.conns:
            c.frozen = True
            c.wake.set()
        return len(self.conns)

    def unbind_all(self) -> int:
        """SMSC-initiated unbind on every bound session; returns how many."""
        n = 0
        for c in list(self.conns):
            if c.bound:
                c.request_unbind()
                n += 1
        return n

    async def connect_memory(self, settings: object = None) -> trio.abc.Stream:
        """An in-memory connection to this simulator (a ``gateway.bind.Connector``).

        For deterministic tests with ``autojump_clock``: no sockets, so the virtual clock
        never jumps while bytes are in flight in the kernel. Needs ``run`` to be running.
        """
        if self._nursery is None:
            raise OSError(111, "simulator not running")
        client, server = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._handle, server)
        await trio.lowlevel.checkpoint()
        return client

    @property
    def bound_sessions(self) -> int:
        return sum(1 for c in self.conns if c.bound)

    # -- serving ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[SimServer] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        s = self.settings
        listeners: list[trio.SocketListener] = await trio.open_tcp_listeners(s.port, host=s.host)
        self.port = listeners[0].socket.getsockname()[1]
        ssl_ctx: ssl.SSLContext | None = None
        if s.certfile:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(s.certfile, s.keyfile)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._receipt_loop)
            if ssl_ctx is not None:
                tls = [trio.SSLListener(lst, ssl_ctx, https_compatible=False)
                       for lst in listeners]
                await nursery.start(trio.serve_listeners, self._handle, tls)
            else:
                await nursery.start(trio.serve_listeners, self._handle, listeners)
            if s.control_port is not None:
                from gateway.http import serve

                control_listeners = await trio.open_tcp_listeners(s.control_port, host=s.host)
                control = await nursery.start(serve, self._control, control_listeners)
                self.control_port = control.port
                log.info("sandbox SMSC control endpoint on http://%s:%d", s.host,
                         self.control_port)
            log.info("sandbox SMSC listening on %s:%d", s.host, self.port)
            task_status.started(self)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        self.stats.connections += 1
        conn = _Conn(self, stream, next(self._numbers))
        self.conns.append(conn)
        try:
            await conn.serve()
        except trio.BrokenResourceError:
            pass
        finally:
            conn.closed = True
            self.conns.remove(conn)
            self._unbound(conn)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await trio.aclose_forcefully(stream)

    def sessions(self) -> list[SessionInfo]:
        """The connections, for ``GET /sessions``."""
        return [
            SessionInfo(session=c.number, system_id=c.system_id, can_submit=c.can_submit,
                        can_receive=c.can_receive, submits=c.submits,
                        pending_deliver=len(c.pending), inflight_deliver=len(c.inflight))
            for c in self.conns
        ]

    async def _control(self, request: Request) -> Response:
        """The HTTP control endpoint (see the module docstring)."""
        method, path = request.method, request.path
        if method == "GET" and path == "/stats":
            self.stats.bound_sessions = self.bound_sessions
            self.stats.pending_deliver = len(self._held)
            return _json(200, self.stats)
        if method == "GET" and path == "/sessions":
            return _json(200, self.sessions())
        if method != "POST":
            return _json(404, {"error": f"no {method} {path}"})
        if path == "/mo":
            try:
                mo = _MO_DECODER.decode(request.body)
                body: str | bytes
                if mo.short_message_hex is not None:
                    body = bytes.fromhex(mo.short_message_hex)
                elif mo.text is not None:
                    body = mo.text
                else:
                    raise ValueError("text or short_message_hex is required")
                n = await self.inject_mo(mo.source_addr, mo.destination_addr, body,
                                         system_id=mo.system_id, data_coding=mo.data_coding)
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as e:
                return _json(400, {"error": str(e)})
            return _json(202, {"queued": n})
        actions = {"/drop": self.drop_all, "/unbind": self.unbind_all,
                   "/freeze": self.freeze_all}
        action = actions.get(path)
        if action is None:
            return _json(404, {"error": f"no POST {path}"})
        return _json(200, {"sessions": action()})

    # -- internals -------------------------------------------------------------------------

    def _binds_of(self, system_id: str) -> int:
        return sum(1 for c in self.conns if c.system_id == system_id and not c.closed)

    def _bucket(self, system_id: str) -> TokenBucket | None:
        tps = self.settings.tps
        if not tps:
            return None
        b = self._buckets.get(system_id)
        if b is None:
            b = self._buckets[system_id] = TokenBucket(tps, now=0.0)
        return b

    def _next_id(self) -> str:
        n = next(self._ids)
        return f"{n:x}" if self.settings.msgid == "hex" else str(n)

    def _bound(self, conn: _Conn) -> None:
        self.stats.bound_sessions = self.bound_sessions
        if conn.can_receive and self._held:
            held, self._held = self._held, deque()
            for d in held:
                self._route(d)

    def _unbound(self, conn: _Conn) -> None:
        self.stats.bound_sessions = self.bound_sessions
        # at-least-once: deliveries that never got a resp go out again elsewhere
        leftovers = list(conn.inflight.values()) + list(conn.pending)
        conn.inflight.clear()
        conn.pending.clear()
        for d in leftovers:
            self.stats.dlrs_requeued += 1
            d.preferred = None
            self._route(d)

    def _requeue(self, d: _Delivery) -> None:
        d.preferred = None
        self._route(d)

    def _drop(self, conn: _Conn) -> None:
        stream = conn.stream
        sock = getattr(stream, "socket", None)
        if sock is not None:
            # SO_LINGER 0: close() sends RST, like a carrier's box going away.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.closed = True
        conn.close()

    def _route(self, d: _Delivery) -> None:
        pref = d.preferred
        if pref is not None and pref.bound and pref.can_receive:
            pref.offer(d)
            return
        receivers = [c for c in self.conns
                     if c.bound and c.can_receive and c.system_id == d.system_id]
        if not receivers:
            self._held.append(d)
            self.stats.pending_deliver = len(self._held)
            return
        self._rr += 1
        receivers[self._rr % len(receivers)].offer(d)

    def _schedule_receipt(self, conn: _Conn, submit: P.SubmitSm, message_id: str,
                          now: float) -> None:
        s = self.settings
        r = self.rng.random()
        pick = self._mix[-1][1]
        for bound, x in self._mix:
            if r < bound:
                pick = x
                break
        want = submit.registered_delivery & 3
        success = pick.stat in _SUCCESS
        if (want == 2 and success) or (want == 3 and not success):
            return
        err = pick.err if pick.err is not None else ("000" if success else "001")
        stamp = _dt.datetime.now().strftime("%y%m%d%H%M")
        body = submit.short_message
        if submit.esm_class & 0x40 and body:
            body = body[1 + body[0]:]
        text = body[:20].decode("latin-1") if submit.data_coding in (0, 1, 3) else ""
        text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
        text_id = message_id
        if s.dlr_text_id == "dec" and s.msgid == "hex":
            text_id = str(int(message_id, 16))
        receipt = (
            f"id:{text_id} sub:001 dlvrd:{'001' if pick.stat == 'DELIVRD' else '000'} "
            f"submit date:{stamp} done date:{stamp} stat:{pick.stat} err:{err} text:{text}"
        ).encode("latin-1")
        tlvs: tuple[P.Tlv, ...] = (
            P.tlv_cstr(Tag.RECEIPTED_MESSAGE_ID, message_id),
            P.tlv_u8(Tag.MESSAGE_STATE, _STATES.get(pick.stat, MessageState.UNKNOWN)),
        )
        if s.dlr_network_error and err != "000" and err.isdigit():
            tlvs += (P.Tlv(Tag.NETWORK_ERROR_CODE, b"\x03" + int(err).to_bytes(2, "big")),)
        pdu = P.DeliverSm(
            source_addr_ton=submit.dest_addr_ton, source_addr_npi=submit.dest_addr_npi,
            source_addr=submit.destination_addr,
            dest_addr_ton=submit.source_addr_ton, dest_addr_npi=submit.source_addr_npi,
            destination_addr=submit.source_addr,
            esm_class=0x04, short_message=receipt, tlvs=tlvs,
        )
        due = now + s.dlr_delay + (self.rng.uniform(0, s.dlr_jitter) if s.dlr_jitter else 0.0)
        d = _Delivery(pdu, conn.system_id or "", conn, False)
        heapq.heappush(self._receipts, (due, next(self._receipt_order), d))
        if len(self._receipts) == 1:
            self._receipt_wake.set()

    async def _receipt_loop(self) -> None:
        receipts = self._receipts
        while True:
            until = receipts[0][0] if receipts else math.inf
            with trio.move_on_at(until):
                await self._receipt_wake.wait()
            if self._receipt_wake.is_set():
                self._receipt_wake = trio.Event()
            now = trio.current_time()
            while receipts and receipts[0][0] <= now:
                self._route(heapq.heappop(receipts)[2])


def _json(status: int, body: object) -> Response:
    from gateway.http import Response

    return Response(status, msgspec.json.encode(body),
                    headers=[(b"content-type", b"application/json")])


async def run_sim(settings: SimSettings | None = None, *,
                  task_status: trio.TaskStatus[SimServer] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a ``SimServer`` until cancelled; ``task_status.started(server)`` once listening."""
    server = SimServer(settings)
    await server.run(task_status=task_status)
