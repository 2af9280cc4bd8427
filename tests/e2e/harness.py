"""A gateway under test: config writer, in-process or subprocess runner, small API client.

Used by the end-to-end tests (``tests/e2e``) and the reliability tests. One
:class:`GatewayUnderTest` owns a directory (config, rules data files, store); it can be
started in-process (``gateway.app.Gateway.run`` in a trio nursery) or as ``smsgw run``
in a subprocess (``SMSGW_READY_FILE`` for the bound ports), stopped with SIGTERM or
killed with SIGKILL, and started again on the same store.

Typical use against the simulator::

    with run_sim("--system-id", "gw", "--password", "pw", tmp_path=tmp_path, log=True) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, "gw", "pw")])
        with trio.fail_after(20):
            async with gut.in_process() as api:       # or: gut.subprocess()
                results = await api.submit([{"to": "+33612345678", "text": "hi",
                                             "kind": "transactional"}])
                await api.wait_status([r["id"] for r in results], {"delivered"})

Every wait is a bounded poll (the caller's ``trio.fail_after`` or ``timeout``), never a
fixed sleep for timing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import trio

from gateway.app import READY_FILE_ENV, Gateway, Ready, ready_from_file
from gateway.config import GatewayConfig, load_config
from tests.api.client import Reply, request
from tests.app.helpers import ROOT, poll
from tests.peers import SimHandle

__all__ = [
    "TERMINAL",
    "ApiClient",
    "GatewayUnderTest",
    "injected_wall_clock",
    "poll",
    "sim_carrier",
    "to_toml",
]

T = TypeVar("T")

#: Message statuses after which nothing more is expected (``unknown``: no answer came).
TERMINAL = frozenset({"delivered", "partially_delivered", "undelivered", "expired",
                      "failed", "rejected", "unknown"})


# -- config -------------------------------------------------------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}"
                               for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {type(v).__name__}")


def to_toml(doc: Mapping[str, Any]) -> str:
    """A small TOML writer for config dicts: tables, arrays of tables (lists of dicts under
    a key), scalars, lists and inline tables (dicts nested inside lists/arrays)."""
    lines: list[str] = []

    def table(prefix: str, d: Mapping[str, Any], header: str | None) -> None:
        scalars = {k: v for k, v in d.items()
                   if not isinstance(v, Mapping) and not _is_table_array(v)}
        if header is not None and (scalars or not d):
            lines.append(header)
        for k, v in scalars.items():
            lines.append(f"{json.dumps(str(k))} = {_toml_value(v)}")
        for k, v in d.items():
            key = f"{prefix}.{json.dumps(str(k))}" if prefix else json.dumps(str(k))
            if isinstance(v, Mapping):
                table(key, v, f"[{key}]")
            elif _is_table_array(v):
                for item in v:
                    lines.append(f"[[{key}]]")
                    table(key, item, None)

    table("", doc, None)
    return "\n".join(lines) + "\n"


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def sim_carrier(sim: SimHandle | int, system_id: str, password: str, *,
                name: str = "sim", **overrides: Any) -> dict[str, Any]:
    """A ``[[carriers]]`` entry pointing at the simulator (or any SMSC port), with fast
    reconnects; ``overrides`` are more carrier keys (``message_id_format``, ``window``...)."""
    port = sim if isinstance(sim, int) else sim.smpp_port
    carrier: dict[str, Any] = {
        "name": name, "host": "127.0.0.1", "port": port, "system_id": system_id,
        "password": password, "default_sender": "SMSGW",
        "reconnect_min_s": 0.05, "reconnect_max_s": 0.5,
        "enquire_link_s": 5.0, "response_timeout_s": 5.0, "bind_timeout_s": 5.0,
    }
    carrier.update(overrides)
    return carrier


# -- wall clock ---------------------------------------------------------------------------

@contextmanager
def injected_wall_clock(clock: Callable[[], float] | None) -> Iterator[None]:
    """While the gateway is being started in-process, make the pipeline's wall clock
    ``clock`` (epoch seconds) instead of ``time.time``.

    ``gateway.app`` has no clock argument; the pipeline's components take one
    (``clock=`` of ``Dispatcher``, ``InboundProcessor``, ``GatewayBackend``, which passes
    it to ``Accepter.accept``), so their keyword default is swapped for the duration of
    the start (the constructors run before ``Ready``). A clock running at real speed with
    an offset (``lambda: time.time() + offset``) moves the gateway to a chosen date and
    time of day; trio's timers are untouched. ``None``: nothing is patched.
    """
    if clock is None:
        yield
        return
    from gateway.backend import GatewayBackend
    from gateway.pipeline.dispatch import Dispatcher
    from gateway.pipeline.inbound import InboundProcessor

    defaults = [cls.__init__.__kwdefaults__ for cls in (Dispatcher, InboundProcessor,
                                                       GatewayBackend)]
    saved = []
    for d in defaults:
        assert d is not None and "clock" in d, "the pipeline's clock argument moved"
        saved.append(d["clock"])
        d["clock"] = clock
    try:
        yield
    finally:
        for d, old in zip(defaults, saved, strict=True):
            assert d is not None
            d["clock"] = old


# -- API client ---------------------------------------------------------------------------

class ApiError(AssertionError):
    """An API answer with an unexpected status (carries the reply)."""

    def __init__(self, what: str, reply: Reply) -> None:
        super().__init__(f"{what}: HTTP {reply.status} {reply.body[:500]!r}")
        self.reply = reply


class ApiClient:
    """The gateway's HTTP API, one fresh connection per call (tests.api.client.request)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token

    async def call(self, method: str, target: str, **kw: Any) -> Reply:
        if self.token is not None:
            kw.setdefault("token", self.token)
        return await request(self.port, method, target, **kw)

    async def _json(self, what: str, method: str, target: str, ok: Collection[int],
                    **kw: Any) -> Any:
        reply = await self.call(method, target, **kw)
        if reply.status not in ok:
            raise ApiError(what, reply)
        return reply.json()

    async def submit(self, messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``POST /v1/messages`` with a batch; the per-message results (202 or 200)."""
        body = await self._json("submit", "POST", "/v1/messages", (200, 202),
                                json={"messages": list(messages)})
        results: list[dict[str, Any]] = body["results"]
        return results

    async def submit_one(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return (await self.submit([message]))[0]

    async def message(self, message_id: str) -> dict[str, Any]:
        """``GET /v1/messages/{id}``."""
        body: dict[str, Any] = await self._json(
            "get message", "GET", f"/v1/messages/{quote(message_id)}", (200,))
        return body

    async def consent(self, phone: str, action: str, **kw: Any) -> dict[str, Any]:
        """``POST /v1/consent`` (``action``: subscribe | unsubscribe | confirm)."""
        body: dict[str, Any] = await self._json(
            "consent", "POST", "/v1/consent", (200, 201, 202),
            json={"phone": phone, "action": action, "source": kw.pop("source", "e2e"), **kw})
        return body

    async def recipient(self, phone: str) -> dict[str, Any]:
        """``GET /v1/recipients/{phone}``."""
        body: dict[str, Any] = await self._json(
            "recipient", "GET", f"/v1/recipients/{quote(phone)}", (200,))
        return body

    async def error_segment(self, days: int = 30) -> list[dict[str, Any]]:
        """``GET /v1/segments/sms-errors`` (NDJSON): one dict per recipient."""
        reply = await self.call("GET", f"/v1/segments/sms-errors?days={days}")
        if reply.status != 200:
            raise ApiError("error segment", reply)
        return [json.loads(line) for line in reply.body.decode().splitlines() if line.strip()]

    async def events(self, after: str | None = None, limit: int = 1000,
                     wait: float = 0) -> dict[str, Any]:
        """``GET /v1/events``: ``{"events": [...], "next": cursor}``."""
        target = f"/v1/events?limit={limit}&wait={wait:g}"
        if after is not None:
            target += f"&after={quote(after)}"
        body: dict[str, Any] = await self._json("events", "GET", target, (200,))
        return body

    async def all_events(self) -> list[dict[str, Any]]:
        """Every event in the feed so far (pages through it)."""
        out: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = await self.events(after)
            out += page["events"]
            if not page["events"]:
                return out
            after = page["next"]

    async def ready(self) -> bool:
        return (await self.call("GET", "/readyz")).status == 200

    async def wait_ready(self, interval: float = 0.02) -> None:
        """Until ``/readyz`` answers 200 (a bind per routed carrier); bound by the caller."""
        async def check() -> bool | None:
            return True if await self.ready() else None
        await poll(check, interval)

    async def wait_status(self, ids: Iterable[str], statuses: Collection[str],
                          interval: float = 0.05) -> dict[str, dict[str, Any]]:
        """Until every message's status is in ``statuses``; returns the bodies by id."""
        pending = list(ids)
        done: dict[str, dict[str, Any]] = {}

        async def check() -> bool | None:
            for mid in list(pending):
                body = await self.message(mid)
                if body["status"] in statuses:
                    done[mid] = body
                    pending.remove(mid)
            return True if not pending else None

        await poll(check, interval)
        return done

    async def wait_for(self, check: Callable[[ApiClient], Awaitable[T | None]],
                       interval: float = 0.05) -> T:
        """Poll ``check(api)`` until it returns something (bound by the caller)."""
        return await poll(lambda: check(self), interval)


# -- the gateway --------------------------------------------------------------------------

def smsgw_command() -> list[str]:
    """``smsgw`` from the venv, or ``python -m gateway.cli``."""
    script = Path(sys.executable).parent / "smsgw"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


class GatewayUnderTest:
    """A gateway configuration in ``directory`` and the ways to run it.

    ``carriers``: ``[[carriers]]`` dicts (see :func:`sim_carrier`); routes default to
    ``prefix "+"`` -> every carrier in order. ``durability``: ``"os"`` (fast) or
    ``"fsync"``. ``rules``: a dict merged into ``[rules]`` (policy overrides, e.g.
    ``{"smart_sending": {"enabled": False}}``). ``pipeline``: merged into ``[pipeline]``.
    ``extra``: merged at the top level last. ``quiet_hours``: the text of a
    ``quiet_hours.toml`` to use instead of config/quiet_hours.toml. The sandbox carrier is
    off; the API and metrics listen on ephemeral ports. The store (``store_path``) outlives
    runs: start again to restart on the same store.
    """

    def __init__(self, directory: Path, *, carriers: list[dict[str, Any]],
                 routes: list[dict[str, Any]] | None = None,
                 durability: str = "os", rules: Mapping[str, Any] | None = None,
                 pipeline: Mapping[str, Any] | None = None,
                 extra: Mapping[str, Any] | None = None,
                 quiet_hours: str | None = None, metrics: bool = True,
                 log_level: str = "info", name: str = "gw") -> None:
        self.directory = Path(directory) / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.store_path = self.directory / "data"
        self.config_path = self.directory / "gateway.toml"
        self.ready_file = self.directory / "ready.json"
        self.log_path = self.directory / "smsgw.log"
        self.runs = 0
        doc: dict[str, Any] = {
            "api": {"listen": "127.0.0.1:0"},
            "metrics": {"enabled": metrics, "listen": "127.0.0.1:0"},
            "store": {"path": str(self.store_path), "durability": durability},
            "sandbox": {"enabled": False},
            "logging": {"level": log_level},
            "pipeline": {"retry_backoff_min_s": 0.2, "retry_backoff_max_s": 2.0,
                         **(pipeline or {})},
            "carriers": carriers,
            "routes": routes or [{"prefix": "+", "carriers": [c["name"] for c in carriers]}],
        }
        if rules:
            doc["rules"] = dict(rules)
        if extra:
            doc = _merge(doc, extra)
        self.doc = doc
        # Rules data files beside the config (load_rules_data looks in the config's dir;
        # the subprocess gets SMSGW_CONFIG_DIR): keywords as shipped, quiet hours optional.
        shutil.copy(ROOT / "config" / "keywords.toml", self.directory / "keywords.toml")
        (self.directory / "quiet_hours.toml").write_text(
            quiet_hours if quiet_hours is not None
            else (ROOT / "config" / "quiet_hours.toml").read_text())
        self.config_path.write_text(to_toml(doc))
        self.gateway: Gateway | None = None
        self.proc: trio.Process | None = None
        self.ready: Ready | None = None
        self.api: ApiClient | None = None

    def config(self) -> GatewayConfig:
        """The written config, loaded and validated like ``smsgw run`` does."""
        return load_config(self.config_path, env={})

    # in-process ------------------------------------------------------------------------

    async def start_in_process(self, nursery: trio.Nursery, *,
                               clock: Callable[[], float] | None = None) -> ApiClient:
        """``Gateway(config).run`` in ``nursery``; returns the API client once ready.
        ``clock``: the pipeline's wall clock (:func:`injected_wall_clock`)."""
        self.gateway = Gateway(self.config(), config_dir=self.directory, handle_signals=False)
        with injected_wall_clock(clock):
            self.ready = await nursery.start(self.gateway.run)
        self.runs += 1
        self.api = ApiClient(self.ready.api_port)
        return self.api

    @asynccontextmanager
    async def in_process(self, *, wait_ready: bool = True,
                         clock: Callable[[], float] | None = None) -> AsyncIterator[ApiClient]:
        """Run in-process for the block (then a graceful stop); optionally until /readyz."""
        async with trio.open_nursery() as nursery:
            api = await self.start_in_process(nursery, clock=clock)
            try:
                if wait_ready:
                    await api.wait_ready()
                yield api
            finally:
                assert self.gateway is not None
                self.gateway.stop()

    # subprocess ------------------------------------------------------------------------

    async def start_subprocess(self, *, within: float = 20.0,
                               env: Mapping[str, str] | None = None) -> ApiClient:
        """``smsgw run -c gateway.toml`` with ``SMSGW_READY_FILE``; waits for the file."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.ready_file.unlink(missing_ok=True)
        full_env = {**os.environ, READY_FILE_ENV: str(self.ready_file),
                    "SMSGW_CONFIG_DIR": str(self.directory), **(env or {})}
        full_env.pop("SMSGW_CONFIG", None)
        with self.log_path.open("ab") as log:
            log.write(f"\n--- run {self.runs + 1} ---\n".encode())
            log.flush()
            self.proc = await trio.lowlevel.open_process(
                [*smsgw_command(), "run", "-c", str(self.config_path)], env=full_env,
                stdout=log, stderr=subprocess.STDOUT, cwd=str(self.directory))
        proc = self.proc

        async def started() -> Ready | None:
            if proc.poll() is not None:
                raise AssertionError(f"smsgw exited with {proc.returncode}:\n{self.log()}")
            return ready_from_file(self.ready_file)

        with trio.fail_after(within):
            self.ready = await poll(started, 0.05)
        self.runs += 1
        self.api = ApiClient(self.ready.api_port)
        return self.api

    async def kill(self, sig: int = signal.SIGKILL, within: float = 25.0) -> int:
        """Send ``sig`` (SIGKILL: a crash; SIGTERM: a graceful stop) and wait for the exit."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(sig)
        with trio.fail_after(within):
            code = await proc.wait()
        return code

    async def terminate(self, within: float = 25.0) -> int:
        """SIGTERM and wait; the graceful path exits 0."""
        return await self.kill(signal.SIGTERM, within)

    @asynccontextmanager
    async def subprocess(self, *, wait_ready: bool = True) -> AsyncIterator[ApiClient]:
        """Run as a subprocess for the block; SIGKILLed at the end if still running."""
        api = await self.start_subprocess()
        try:
            if wait_ready:
                await api.wait_ready()
            yield api
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                with trio.move_on_after(10):
                    await self.proc.wait()

    def log(self) -> str:
        """The subprocess output so far (all runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
