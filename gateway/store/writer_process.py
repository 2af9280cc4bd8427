"""The write transactions in a child process (``[store] writer = "process"``).

Why: the gateway is one Python process, and the group-commit writer thread shares the
GIL with the trio thread. Under load the writer's Python work (applying ops, update
functions, event encoding) took ~30 % of the process's CPU, and every py-lmdb call
releases and re-takes the GIL, so the two threads hand it back and forth thousands of
times a second (bench/RESULTS.md, session 6). Here the writer thread stays (its queue,
lanes, group commit and wake-ups are unchanged, ``writer.py``), but it only pickles the
group, sends it to a child process that owns every write transaction of the environment,
and waits (GIL released) for the outcomes. The child runs the same ``apply_group`` over
the same files, on the other core.

Reads stay in the gateway process: LMDB is multi-process (its lock file coordinates the
readers and the one writer). When the child grows the map, the parent adopts the new
size (``mdb_env_set_mapsize(0)``) before it wakes the group's waiters, so no read of the
parent's meets data beyond its mapping.

Protocol (one socketpair, ``multiprocessing.connection`` framing, pickle protocol 5):
parent -> child: the open arguments, then one message per group (a list of
``WriteBatch``); child -> parent: ``("ready", map_size)``, then per group
``(outcomes, reports, map_size, map_used, map_grows)`` or ``("error", exc)`` for a
whole-group failure (``StoreError``); ``reports`` carries, per committed batch, the
attributes its ``run_in_txn`` functions report (``WriteBatch.reports``: the retention
sweep's counts), which the parent copies onto its own objects. EOF on the socket stops
the child after the group under way. A child that dies fails the group in flight and
every later one with ``StoreUnavailableError`` (nothing of a group is acknowledged
before its commit).
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Final

import msgspec

from .batch import MESSAGE_DECODER, RECIPIENT_DECODER, WriteBatch
from .errors import StoreError, StoreUnavailableError
from .records import CommitResult, Event

__all__ = ["ChildWriter", "child_main"]

# msgspec decoders (UPDATE ops and the retention checks carry them) cannot be pickled:
# they travel as the type they decode, and the child makes one decoder per type.
_DECODERS: dict[Any, msgspec.msgpack.Decoder[Any]] = {
    MESSAGE_DECODER.type: MESSAGE_DECODER,
    RECIPIENT_DECODER.type: RECIPIENT_DECODER,
}


def _decoder(typ: Any) -> msgspec.msgpack.Decoder[Any]:
    d = _DECODERS.get(typ)
    if d is None:
        d = _DECODERS[typ] = msgspec.msgpack.Decoder(typ)
    return d


def _reduce_decoder(d: msgspec.msgpack.Decoder[Any]) -> tuple[Any, tuple[Any]]:
    if d.dec_hook is not None or d.ext_hook is not None or not d.strict:
        raise pickle.PicklingError(f"a decoder of {d.type!r} with hooks cannot go to the "
                                   "writer process")
    return _decoder, (d.type,)


_encode = msgspec.msgpack.Encoder().encode
_EVENT: Final = msgspec.msgpack.Decoder(Event)


def _event(raw: bytes) -> Event:
    return _EVENT.decode(raw)


def _reduce_event(ev: Event) -> tuple[Any, tuple[bytes]]:
    # An event (three a message) as its msgpack bytes: pickle's generic Struct path was
    # ~0.8 us to pickle and ~3 us to unpickle each.
    return _event, (_encode(ev),)


_DISPATCH: Final = dict(copyreg.dispatch_table)
_DISPATCH[msgspec.msgpack.Decoder] = _reduce_decoder
_DISPATCH[Event] = _reduce_event


def _dumps(obj: object) -> bytes:
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=5)
    p.dispatch_table = _DISPATCH
    p.dump(obj)
    return buf.getvalue()


def _portable(exc: Exception) -> Exception:
    # An outcome must survive the trip back; one that does not (an update function's
    # exception with odd arguments) is reported by its text.
    try:
        pickle.loads(_dumps(exc))
    except Exception:
        return StoreUnavailableError(f"{type(exc).__name__}: {exc}")
    return exc


class ChildWriter:
    """The parent's end: ``run_group`` is a ``GroupRunner`` (writer thread only)."""

    def __init__(self, path: str, *, durability: str, map_size: int, max_map_size: int,
                 os_sync_interval: float) -> None:
        parent, child = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.store.writer_child", str(child.fileno())],
                pass_fds=(child.fileno(),),
                env={**os.environ, "PYTHONPATH": os.pathsep.join(
                    p for p in (_package_root(), os.environ.get("PYTHONPATH", "")) if p)},
            )
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        self._lock = threading.Lock()
        self._dead: str | None = None
        self.map_size = map_size
        self.map_used = 0
        self.map_grows = 0
        self._conn.send_bytes(_dumps((path, durability, map_size, max_map_size,
                                      os_sync_interval)))
        reply = self._recv()
        if not (isinstance(reply, tuple) and reply and reply[0] == "ready"):
            self.close()
            raise StoreUnavailableError(f"store writer process failed to start: {reply!r}")
        self.map_size = reply[1]

    def _recv(self) -> Any:
        try:
            return pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as exc:
            self._dead = f"store writer process ended ({self._exit_status()})"
            raise StoreUnavailableError(self._dead) from exc

    def _exit_status(self) -> str:
        code = self._proc.poll()
        return "running" if code is None else f"exit status {code}"

    def run_group(self, batches: Sequence[WriteBatch]) -> tuple[list[CommitResult | Exception],
                                                                 int]:
        """Send one group, wait for its outcomes; returns them and the map size.

        Each batch is pickled on its own: one that cannot be (an update function that is a
        local closure) fails alone with a ``TypeError`` and is not sent.
        """
        if self._dead is not None:
            raise StoreUnavailableError(self._dead)
        wire: list[bytes] = []
        refused: dict[int, Exception] = {}
        for i, batch in enumerate(batches):
            try:
                wire.append(_dumps(batch))
            except Exception as exc:
                refused[i] = TypeError(
                    f"a batch for the writer process cannot be pickled ({exc}); update and "
                    "transaction functions must be module-level or Portable")
                refused[i].__cause__ = exc
        if not wire:
            return list(refused.values()), self.map_size
        try:
            self._conn.send_bytes(_dumps(wire))
        except OSError as exc:
            self._dead = f"store writer process ended ({self._exit_status()})"
            raise StoreUnavailableError(self._dead) from exc
        reply = self._recv()
        if reply[0] == "error":
            raise reply[1]
        sent, reports, self.map_size, self.map_used, self.map_grows = reply
        if refused:
            it = iter(sent)
            outcomes = [refused[i] if i in refused else next(it) for i in range(len(batches))]
        else:
            outcomes = sent
        if reports:
            posted = [b for i, b in enumerate(batches) if i not in refused]
            for i, values in reports.items():
                for fn, vals in zip(posted[i].reports, values, strict=True):
                    for name, value in zip(fn._reports, vals, strict=True):
                        setattr(fn, name, value)
        return outcomes, self.map_size

    def close(self) -> None:
        """Stop the child after the group under way; wait for it. Idempotent."""
        with self._lock:
            if self._conn.closed:
                return
            self._conn.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _package_root() -> str:
    # The directory holding the ``gateway`` package, so the child imports the same code.
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def child_main(fd: int) -> None:
    """The child: open the environment, then run groups until EOF."""
    from .lmdb_store import LmdbStore

    conn = Connection(fd)
    path, durability, map_size, max_map_size, os_sync_interval = pickle.loads(conn.recv_bytes())
    try:
        store = LmdbStore.open(path, durability=durability, map_size=map_size,
                               max_map_size=max_map_size, os_sync_interval=os_sync_interval)
    except Exception as exc:
        conn.send_bytes(_dumps(("error", _portable(exc))))
        return
    conn.send_bytes(_dumps(("ready", store._map_size)))
    loads = pickle.loads
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except EOFError:
                return
            batches = [loads(b) for b in loads(data)]
            try:
                outcomes = store._run_group(batches)
            except StoreError as exc:
                conn.send_bytes(_dumps(("error", _portable(exc))))
                continue
            reports: dict[int, list[tuple[Any, ...]]] = {}
            for i, o in enumerate(outcomes):
                if isinstance(o, Exception):
                    outcomes[i] = _portable(o)
                elif batches[i].reports:
                    reports[i] = [tuple(getattr(fn, n) for n in fn._reports)
                                  for fn in batches[i].reports]
            conn.send_bytes(_dumps((outcomes, reports, store._map_size, store._map_used,
                                    store._map_grows)))
    finally:
        store._close_env()

