"""``smsgw``: the command line (``run``, ``check-config``, ``send``, ``sim``, ``bench``).

Exit codes: 0 success; 1 the command failed (API unreachable, a component is not
installed, the service stopped with an error); 2 bad usage or an invalid config (the
message names the field path: ``carriers[0].window: expected `int` <= 1024``).

``run``, ``sim`` and ``bench`` import their implementation lazily, so ``check-config``
and ``send`` stay fast and work on a machine without the runtime pieces:

- ``run``   -> ``gateway.app``: ``run(config: GatewayConfig) -> int | None`` (blocking,
  e.g. around ``trio.run``) or ``async def run(config)`` (run here with ``trio.run``);
  ``main`` is accepted instead of ``run``.
- ``sim``   -> ``gateway.sim.run_sim(settings, task_status=...)``.
- ``bench`` -> a ``bench`` package with ``main(argv) -> int | None``, or else the script
  ``bench/NAME.py`` of a source checkout, run as ``__main__``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import runpy
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import msgspec

import gateway
from gateway.config import ConfigError, GatewayConfig, SandboxConfig, is_loopback, load_config

__all__ = ["build_parser", "main"]

DEFAULT_CONFIG = "config/gateway.toml"
DEFAULT_API = "http://127.0.0.1:8080"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_CONFIG_HELP = ("TOML config file (default: $SMSGW_CONFIG, else ./config/gateway.toml, the "
                "embedded default)")


class _Failed(Exception):
    """A command failed with a message for the user and an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    """The ``smsgw`` argument parser (exposed for docs and tests)."""
    p = argparse.ArgumentParser(
        prog="smsgw",
        description="SMPP 3.4 gateway for SMS marketing: compliance rules inline, durable "
                    "outbox, delivery receipts, a local HTTP API and Prometheus metrics.",
        epilog="Run `smsgw COMMAND --help` for a command's options. Exit codes: 0 ok, "
               "1 failed, 2 bad usage or invalid config.")
    p.add_argument("--version", action="version", version=f"smsgw {gateway.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run", help="run the gateway (API, binds, store, metrics)",
        description="Load and validate the config, then run the gateway until SIGINT/SIGTERM.")
    run.add_argument("-c", "--config", metavar="FILE", help=_CONFIG_HELP)
    run.set_defaults(func=_cmd_run)

    chk = sub.add_parser(
        "check-config", help="validate a config file",
        description="Validate a config file without starting anything. Prints a one-line "
                    "summary and exits 0, or prints the field path and the reason and exits 2.")
    chk.add_argument("-c", "--config", metavar="FILE", help=_CONFIG_HELP)
    chk.add_argument("--show", action="store_true",
                     help="also print the effective config as JSON (secrets masked)")
    chk.set_defaults(func=_cmd_check_config)

    send = sub.add_parser(
        "send", help="send one message through a running gateway's HTTP API",
        description="POST one message to /v1/messages and print the API's answer.")
    send.add_argument("--to", required=True, help="recipient, E.164 (+33612345678) or national "
                      "with --country")
    send.add_argument("--text", required=True, help="message text")
    send.add_argument("--kind", choices=["transactional", "campaign", "flow"],
                      default="transactional", help="message kind: decides which compliance "
                      "rules apply (default: %(default)s)")
    send.add_argument("--from", dest="sender", metavar="SENDER",
                      help="sender id (default: the route's default_sender)")
    send.add_argument("--country", help="ISO country for a national --to number, e.g. FR")
    send.add_argument("--smart-encoding", action=argparse.BooleanOptionalAction, default=None,
                      help="replace look-alike characters to stay in GSM-7")
    send.add_argument("--idempotency-key", help="client key: resending it never duplicates")
    send.add_argument("--api", default=os.environ.get("SMSGW_API", DEFAULT_API),
                      help="API base URL (default: $SMSGW_API, else %(default)s)")
    send.add_argument("--token", default=os.environ.get("SMSGW_API_TOKEN"),
                      help="bearer token (default: $SMSGW_API_TOKEN)")
    send.add_argument("--timeout", type=float, default=30.0,
                      help="seconds to wait for the answer (default: %(default)s)")
    send.set_defaults(func=_cmd_send)

    sim = sub.add_parser(
        "sim", help="run the carrier simulator (an SMSC) on its own",
        description="Run the sandbox SMSC: accepts binds, answers submit_sm and sends "
                    "delivery receipts. Settings come from the [sandbox] section of -c FILE "
                    "(when given), then from these options.")
    sim.add_argument("-c", "--config", metavar="FILE",
                     help="take defaults from this config's [sandbox] section")
    sim.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    sim.add_argument("--port", type=int, help="port to listen on; 0 = any (default: 2775)")
    sim.add_argument("--system-id", help="system_id to accept (default: sandbox)")
    sim.add_argument("--password", help="password to accept (default: sandbox)")
    sim.add_argument("--dlr-delay-ms", type=int, help="submit -> receipt delay (default: 100)")
    sim.add_argument("--dlr-jitter-ms", type=int, help="random extra receipt delay (default: 0)")
    sim.add_argument("--dlr-stat", action="append", metavar="STAT[:ERR]=WEIGHT",
                     help="receipt outcome mix, repeatable: --dlr-stat DELIVRD=0.9 "
                          "--dlr-stat UNDELIV:001=0.1 (default: DELIVRD=1)")
    sim.add_argument("--tps", type=float, help="submits/s before ESME_RTHROTTLED; 0 = no limit")
    sim.add_argument("--msgid", choices=["hex", "dec"], help="message_id format (default: hex)")
    sim.add_argument("--fail-rate", type=float,
                     help="fraction of submits answered ESME_RSYSERR (default: 0)")
    sim.set_defaults(func=_cmd_sim)

    bench = sub.add_parser(
        "bench", help="run a benchmark (from a source checkout)",
        description="Run a benchmark from bench/ and print its JSON result, e.g. "
                    "`smsgw bench codec --seconds 0.5`. Without NAME, list them.")
    bench.add_argument("name", nargs="?", metavar="NAME", help="benchmark (bench/NAME.py)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="options for the benchmark")
    bench.set_defaults(func=_cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smsgw`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _Failed as e:
        print(f"smsgw {args.command}: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------- helpers

def _config_path(arg: str | None) -> str:
    return arg or os.environ.get("SMSGW_CONFIG") or DEFAULT_CONFIG


def _load(arg: str | None) -> tuple[str, GatewayConfig]:
    path = _config_path(arg)
    try:
        return path, load_config(path)
    except ConfigError as e:
        raise _Failed(f"{path}: {e}", EXIT_USAGE) from None


def _import(name: str, what: str) -> ModuleType:
    """Import ``name`` lazily; a missing module is a clear error, not a traceback."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        # Only the module itself (or its package) missing is "not available"; a missing
        # dependency inside it is a real error and keeps its traceback.
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise _Failed(f"{what} is not available in this build ({name} not found)") from None
        raise


def _summary(path: str, cfg: GatewayConfig) -> str:
    api_host = cfg.api.address[0]
    auth = (f"{len(cfg.api.tokens)} token(s)" if cfg.api.tokens
            else "no auth, loopback only" if is_loopback(api_host) else "no auth")
    carriers = ", ".join(f"{c.name} ({c.host}:{c.port}{' tls' if c.tls else ''})"
                         for c in cfg.carriers) or "none"
    parts = [f"api {cfg.api.listen} ({auth})",
             f"metrics {cfg.metrics.listen if cfg.metrics.enabled else 'off'}",
             f"store {cfg.store.path} ({cfg.store.durability})",
             f"sandbox {cfg.sandbox.listen if cfg.sandbox.enabled else 'off'}",
             f"{len(cfg.carriers)} carrier(s): {carriers}",
             f"{len(cfg.routes)} route(s)"]
    return f"{path}: OK: " + "; ".join(parts)


# -------------------------------------------------------------------------- commands

def _cmd_check_config(args: argparse.Namespace) -> int:
    path, cfg = _load(args.config)
    print(_summary(path, cfg))
    if args.show:
        print(msgspec.json.format(msgspec.json.encode(cfg, enc_hook=repr)).decode())
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    path, cfg = _load(args.config)
    from gateway.logging import configure_logging

    configure_logging(cfg.logging.level, json=cfg.logging.json,
                      mask_phones=cfg.logging.mask_phones)
    app = _import("gateway.app", "the gateway service (smsgw run)")
    entry = getattr(app, "run", None) or getattr(app, "main", None)
    if not callable(entry):
        raise _Failed("gateway.app has no run(config) entry point")
    # keywords.toml / quiet_hours.toml are looked up next to the config file first.
    kwargs: dict[str, Any] = {}
    if "config_dir" in inspect.signature(entry).parameters:
        kwargs["config_dir"] = str(Path(path).resolve().parent)
    if inspect.iscoroutinefunction(entry):
        import trio

        result = trio.run(functools.partial(entry, cfg, **kwargs))
    else:
        result = entry(cfg, **kwargs)
    return int(result) if isinstance(result, int) else EXIT_OK


def _sandbox_from_args(args: argparse.Namespace) -> SandboxConfig:
    base = _load(args.config)[1].sandbox if args.config else SandboxConfig()
    data: dict[str, Any] = msgspec.to_builtins(base, enc_hook=lambda s: s.reveal())
    host, port = base.address
    if args.host is not None or args.port is not None:
        host = args.host if args.host is not None else host
        port = args.port if args.port is not None else port
        data["listen"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    for opt, key in [("system_id", "system_id"), ("password", "password"),
                     ("dlr_delay_ms", "dlr_delay_ms"), ("dlr_jitter_ms", "dlr_jitter_ms"),
                     ("tps", "tps"), ("msgid", "msgid"), ("fail_rate", "fail_rate")]:
        value = getattr(args, opt)
        if value is not None:
            data[key] = value
    if args.dlr_stat:
        stats: dict[str, float] = {}
        for item in args.dlr_stat:
            key, sep, weight = item.rpartition("=")
            try:
                stats[key if sep else item] = float(weight) if sep else 1.0
            except ValueError:
                raise _Failed(f"--dlr-stat {item!r}: weight is not a number",
                              EXIT_USAGE) from None
        data["dlr_stats"] = stats
    data["enabled"] = True
    from gateway.config import load_config_bytes

    # Validate the options exactly like the config file (same messages, same paths).
    toml = _to_toml_table("sandbox", data)
    try:
        return load_config_bytes(toml, env={}).sandbox
    except ConfigError as e:
        key = e.path.removeprefix("sandbox.").split(".")[0].split("[")[0]
        option = _SIM_OPTIONS.get(key, "--" + key.replace("_", "-"))
        raise _Failed(f"{option}: {e.reason}", EXIT_USAGE) from None


_SIM_OPTIONS = {"listen": "--host/--port", "dlr_stats": "--dlr-stat"}


def _to_toml_table(name: str, data: dict[str, Any]) -> str:
    lines = [f"[{name}]"]
    for k, v in data.items():
        if v is not None:  # TOML has no null: an unset optional key is left out
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}"
                                for k, x in v.items()) + " }"
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def _cmd_sim(args: argparse.Namespace) -> int:
    sandbox = _sandbox_from_args(args)
    sim = _import("gateway.sim", "the carrier simulator (smsgw sim)")
    import trio

    settings = sandbox.sim_settings()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(sim.run_sim, settings)
            port = getattr(server, "port", settings.port)
            print(f"smsgw sim: listening on {settings.host}:{port} "
                  f"(system_id {sandbox.system_id!r}, msgid {sandbox.msgid}, "
                  f"receipts after {sandbox.dlr_delay_ms} ms); Ctrl-C to stop", flush=True)

    try:
        trio.run(serve)
    except BaseException as e:  # sorted by _leaves below; anything else is re-raised
        leaves = _leaves(e)
        if all(isinstance(x, KeyboardInterrupt) for x in leaves):
            return EXIT_OK
        os_errors = [x for x in leaves if isinstance(x, OSError)]
        if os_errors:
            err = os_errors[0]
            raise _Failed(f"cannot listen on {sandbox.listen}: {err.strerror or err}") from None
        raise
    return EXIT_OK


def _leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in _leaves(sub)]
    return [e]


def _cmd_send(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"to": args.to, "text": args.text, "kind": args.kind}
    optional = {"from": args.sender, "country": args.country,
                "smart_encoding": args.smart_encoding, "idempotency_key": args.idempotency_key}
    body.update({k: v for k, v in optional.items() if v is not None})
    url = args.api.rstrip("/") + "/v1/messages"
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "User-Agent": f"smsgw-cli/{gateway.__version__}"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise _Failed(f"cannot reach the API at {url}: {reason}") from None
    _print_answer(payload, sys.stdout if 200 <= status < 300 else sys.stderr)
    if 200 <= status < 300:
        return EXIT_OK
    print(f"smsgw send: the API answered HTTP {status}", file=sys.stderr)
    return EXIT_FAILED


def _print_answer(payload: bytes, stream: Any) -> None:
    try:
        print(json.dumps(json.loads(payload), indent=2, ensure_ascii=False), file=stream)
    except ValueError:
        print(payload.decode("utf-8", errors="replace"), file=stream)


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        pkg: ModuleType | None = importlib.import_module("bench")
    except ModuleNotFoundError:
        pkg = None
    entry = getattr(pkg, "main", None)
    if callable(entry):
        argv = ([args.name] if args.name else []) + list(args.args)
        result = entry(argv)
        return int(result) if isinstance(result, int) else EXIT_OK
    directory = _bench_dir(pkg)
    if directory is None:
        raise _Failed("benchmarks are not available in this build (run from a source "
                      "checkout: bench/ not found)")
    scripts = sorted(p.stem for p in directory.glob("*.py") if not p.stem.startswith("_"))
    if not args.name:
        print("benchmarks: " + ", ".join(scripts))
        print("run one with: smsgw bench NAME [OPTIONS]")
        return EXIT_OK
    if args.name not in scripts:
        raise _Failed(f"no benchmark {args.name!r} (have: {', '.join(scripts)})", EXIT_USAGE)
    script = directory / f"{args.name}.py"
    return _run_script(script, [str(script), *args.args])


def _bench_dir(pkg: ModuleType | None) -> Path | None:
    candidates = [Path(p) for p in getattr(pkg, "__path__", [])]
    candidates += [Path.cwd() / "bench", Path(gateway.__file__).resolve().parent.parent / "bench"]
    return next((c for c in candidates if c.is_dir()), None)


def _run_script(script: Path, argv: list[str]) -> int:
    saved = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return _exit_code(e)
    finally:
        sys.argv = saved
    return EXIT_OK


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return EXIT_OK
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return EXIT_FAILED


def _entry() -> NoReturn:  # pragma: no cover - `python -m gateway.cli`
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()
