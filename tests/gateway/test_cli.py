"""gateway.cli: exit codes, messages, lazy imports; `send` against a local HTTP stub."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

import gateway
from gateway.cli import build_parser, main
from gateway.config import GatewayConfig
from gateway.sim import DlrStat, SimSettings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = str(ROOT / "config" / "gateway.toml")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SMSGW_CONFIG", "SMSGW_API", "SMSGW_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)


# ----------------------------------------------------------------- version, help

def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"smsgw {gateway.__version__}"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "check-config", "send", "sim", "bench"):
        assert command in out


@pytest.mark.parametrize("command", ["run", "check-config", "send", "sim", "bench"])
def test_command_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: smsgw " + command in capsys.readouterr().out


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_parser_is_exposed() -> None:
    assert build_parser().prog == "smsgw"


# ------------------------------------------------------------------ check-config

def test_check_config_default(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("config/gateway.toml: OK:")
    assert "api 127.0.0.1:8080 (no auth, loopback only)" in out
    assert "sandbox (127.0.0.1:2775)" in out


def test_check_config_env_var(capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSGW_CONFIG", DEFAULT)
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith(DEFAULT + ": OK:")


def test_check_config_invalid_names_the_field(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(Path(DEFAULT).read_text().replace("window = 64", "window = 5000"))
    assert main(["check-config", "-c", str(conf)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        f"smsgw check-config: {conf}: carriers[0].window: expected `int` <= 1024")


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_check_config_show_masks_secrets(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text("[api]\nlisten = '0.0.0.0:8080'\ntokens = ['tok-123']\n")
    assert main(["check-config", "-c", str(conf), "--show"]) == 0
    out = capsys.readouterr().out
    assert "1 token(s)" in out and "tok-123" not in out
    shown = json.loads(out.split("\n", 1)[1])
    assert shown["api"]["tokens"] == ["Secret('********')"]


# -------------------------------------------------------------------------- run

def test_run_without_app_module_fails_clearly(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "gateway.app", None)
    assert main(["run", "-c", DEFAULT]) == 1
    err = capsys.readouterr().err
    assert "not available" in err and "gateway.app" in err


def test_run_invalid_config_exits_2_before_importing(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "gateway.app", None)
    conf = tmp_path / "bad.toml"
    conf.write_text("[store]\ndurability = 'never'\n")
    assert main(["run", "-c", str(conf)]) == 2
    assert "store.durability" in capsys.readouterr().err


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(module, k, v)
    monkeypatch.setitem(sys.modules, name, module)


def test_run_calls_app_with_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[GatewayConfig] = []

    def run(config: GatewayConfig) -> int:
        seen.append(config)
        return 3

    _fake_module(monkeypatch, "gateway.app", run=run)
    assert main(["run", "-c", DEFAULT]) == 3
    assert seen[0].carriers[0].name == "sandbox"


def test_run_async_app(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def run(config: GatewayConfig) -> None:
        seen.append(config.api.listen)

    _fake_module(monkeypatch, "gateway.app", run=run)
    assert main(["run", "-c", DEFAULT]) == 0
    assert seen == ["127.0.0.1:8080"]


def test_run_app_without_entry_point(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _fake_module(monkeypatch, "gateway.app")
    assert main(["run", "-c", DEFAULT]) == 1
    assert "no run(config)" in capsys.readouterr().err


def test_run_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(config: GatewayConfig) -> None:
        raise KeyboardInterrupt

    _fake_module(monkeypatch, "gateway.app", run=run)
    assert main(["run", "-c", DEFAULT]) == 130


# -------------------------------------------------------------------------- sim

def _fake_sim(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    started: list[Any] = []

    async def run_sim(settings: Any, *, task_status: Any) -> None:
        started.append(settings)
        task_status.started(types.SimpleNamespace(port=4242))

    _fake_module(monkeypatch, "gateway.sim", run_sim=run_sim, DlrStat=DlrStat,
                 SimSettings=SimSettings)
    return started


def test_sim_options_become_settings(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    started = _fake_sim(monkeypatch)
    assert main(["sim", "--port", "0", "--system-id", "acct", "--password", "pw",
                 "--dlr-delay-ms", "5", "--dlr-stat", "DELIVRD=0.75",
                 "--dlr-stat", "UNDELIV:1=0.25", "--msgid", "dec", "--tps", "10"]) == 0
    [s] = started
    assert (s.host, s.port, s.accounts, s.dlr_delay, s.msgid, s.tps) == (
        "127.0.0.1", 0, {"acct": "pw"}, 0.005, "dec", 10.0)
    assert [(d.stat, d.weight, d.err) for d in s.dlr_stats] == [
        ("DELIVRD", 0.75, None), ("UNDELIV", 0.25, "001")]
    assert "listening on 127.0.0.1:4242" in capsys.readouterr().out


def test_sim_takes_defaults_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _fake_sim(monkeypatch)
    assert main(["sim", "-c", DEFAULT, "--host", "::1"]) == 0
    [s] = started
    assert (s.host, s.port, s.accounts) == ("::1", 2775, {"sandbox": "sandbox"})


@pytest.mark.parametrize(("argv", "message"), [
    (["--port", "70000"], "--host/--port: port 70000 is out of range"),
    (["--dlr-stat", "DELIVERED=1"], "--dlr-stat: unknown receipt stat"),
    (["--dlr-stat", "DELIVRD=x"], "weight is not a number"),
    (["--dlr-delay-ms", "-1"], "--dlr-delay-ms: expected `int` >= 0"),
    (["--fail-rate", "2"], "--fail-rate: expected `float` <= 1"),
    (["--system-id", ""], "--system-id: expected `str` of length >= 1"),
])
def test_sim_bad_options(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    started = _fake_sim(monkeypatch)
    assert main(["sim", *argv]) == 2
    assert message in capsys.readouterr().err
    assert started == []


def test_sim_port_in_use(monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    async def run_sim(settings: Any, *, task_status: Any) -> None:
        raise OSError(98, "Address already in use")

    _fake_module(monkeypatch, "gateway.sim", run_sim=run_sim, DlrStat=DlrStat,
                 SimSettings=SimSettings)
    assert main(["sim"]) == 1
    assert "cannot listen on 127.0.0.1:2775: Address already in use" in capsys.readouterr().err


# ------------------------------------------------------------------------- send

class _Stub(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, str], bytes]]
    status = 202
    answer = b'{"results": [{"id": "m1", "status": "queued"}]}'

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.requests.append((self.path, dict(self.headers), body))
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.answer)))
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {"requests": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_send_posts_one_message(stub: tuple[str, type[_Stub]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    url, handler = stub
    assert main(["send", "--to", "+33612345678", "--text", "Bonjour", "--kind", "campaign",
                 "--from", "ACME", "--smart-encoding", "--api", url + "/", "--token", "t0k"]) == 0
    [(path, headers, body)] = handler.requests
    assert path == "/v1/messages"
    assert headers["Authorization"] == "Bearer t0k"
    assert json.loads(body) == {"to": "+33612345678", "text": "Bonjour", "kind": "campaign",
                                "from": "ACME", "smart_encoding": True}
    assert json.loads(capsys.readouterr().out)["results"][0]["status"] == "queued"


def test_send_token_from_env(stub: tuple[str, type[_Stub]],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = stub
    monkeypatch.setenv("SMSGW_API_TOKEN", "envtok")
    monkeypatch.setenv("SMSGW_API", url)
    assert main(["send", "--to", "+15551234567", "--text", "hi"]) == 0
    [(_, headers, body)] = handler.requests
    assert headers["Authorization"] == "Bearer envtok"
    assert json.loads(body)["kind"] == "transactional"


def test_send_api_error_exits_1(stub: tuple[str, type[_Stub]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    url, handler = stub
    handler.status = 400
    handler.answer = b'{"error": {"code": "invalid_number", "message": "bad", "field": "to"}}'
    assert main(["send", "--to", "123", "--text", "x", "--api", url]) == 1
    err = capsys.readouterr().err
    assert '"invalid_number"' in err and "HTTP 400" in err


def test_send_unreachable_api(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--to", "+1", "--text", "x", "--api", "http://127.0.0.1:1"]) == 1
    assert "cannot reach the API at http://127.0.0.1:1/v1/messages" in capsys.readouterr().err


# ------------------------------------------------------------------------ bench

def test_bench_lists_scripts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "bench", None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "alpha.py").write_text(
        "import json, sys\nprint(json.dumps({'argv': sys.argv[1:]}))\nsys.exit(3)\n")
    (tmp_path / "bench" / "_helpers.py").write_text("")
    assert main(["bench"]) == 0
    assert "benchmarks: alpha\n" in capsys.readouterr().out
    assert main(["bench", "alpha", "--seconds", "0.1"]) == 3
    assert json.loads(capsys.readouterr().out) == {"argv": ["--seconds", "0.1"]}
    assert main(["bench", "nope"]) == 2
    assert "no benchmark 'nope' (have: alpha)" in capsys.readouterr().err


def test_bench_package_main_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    _fake_module(monkeypatch, "bench", main=lambda argv: calls.append(argv) or 0)
    assert main(["bench", "load", "--rate", "5"]) == 0
    assert calls == [["load", "--rate", "5"]]


# --------------------------------------------------------------- console script

@pytest.mark.slow
def test_console_script_check_config() -> None:
    exe = Path(sys.executable).parent / "smsgw"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gateway.cli"]
    ok = subprocess.run([*cmd, "check-config", "-c", DEFAULT], capture_output=True, text=True,
                        cwd=ROOT, check=False, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert ": OK:" in ok.stdout
    bad = subprocess.run([*cmd, "check-config", "-c", "/nonexistent.toml"], capture_output=True,
                         text=True, cwd=ROOT, check=False, timeout=30)
    assert bad.returncode == 2


def test_run_passes_the_config_dir_so_rules_files_next_to_it_are_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.app import load_rules_data

    (tmp_path / "gateway.toml").write_text((ROOT / "config" / "gateway.toml").read_text())
    (tmp_path / "keywords.toml").write_text((ROOT / "config" / "keywords.toml").read_text())
    monkeypatch.chdir(tmp_path.parent)  # no ./config here, no $SMSGW_CONFIG*
    monkeypatch.delenv("SMSGW_CONFIG_DIR", raising=False)
    seen: list[Any] = []

    def run(config: GatewayConfig, *, config_dir: str | None = None) -> int:
        seen.append(load_rules_data(config, config_dir))
        return 0

    _fake_module(monkeypatch, "gateway.app", run=run)
    assert main(["run", "-c", str(tmp_path / "gateway.toml")]) == 0
    assert seen[0].keywords_file == str(tmp_path / "keywords.toml")
