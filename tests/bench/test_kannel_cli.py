"""bench/kannel.py's pure parts: the rendered kannel.conf, the sendsms URL, the DLR target.

Kannel is a measurement tool, not a dependency: nothing here starts it or needs it
installed (``main`` is checked to refuse cleanly when it is missing).
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from types import ModuleType

import pytest

from tests.bench.helpers import load_bench


@pytest.fixture(scope="module")
def kannel() -> ModuleType:
    return load_bench("kannel")


def _groups(text: str) -> list[dict[str, list[str]]]:
    out = []
    for block in text.strip().split("\n\n"):
        g: dict[str, list[str]] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(" = ")
            assert sep, f"not a key = value line: {line!r}"
            g.setdefault(key, []).append(value.strip('"'))
        out.append(g)
    return out


def _render(kannel: ModuleType, tmp_path: Path, **kw: object) -> str:
    args: dict[str, object] = {"work": tmp_path, "sim_port": 2775, "admin_port": 13000,
                               "smsbox_port": 13001, "sendsms_port": 13013}
    args.update(kw)
    text: str = kannel.render_config(**args)
    return text


def test_groups_in_order_without_blank_lines_inside(kannel: ModuleType,
                                                    tmp_path: Path) -> None:
    groups = _groups(_render(kannel, tmp_path, binds=2))
    assert [g["group"] for g in groups] == [["core"], ["smsc"], ["smsc"], ["smsbox"],
                                           ["sendsms-user"]]


def test_every_listener_is_on_loopback(kannel: ModuleType, tmp_path: Path) -> None:
    core, *_, smsbox, user = _groups(_render(kannel, tmp_path))
    assert core["admin-interface"] == ["127.0.0.1"]
    assert core["smsbox-interface"] == ["127.0.0.1"]
    assert smsbox["sendsms-interface"] == ["127.0.0.1"]
    assert smsbox["bearerbox-host"] == ["127.0.0.1"]
    assert core["box-allow-ip"] == user["user-allow-ip"] == ["127.0.0.1"]
    # no wapbox, no UDP: their ports stay unset
    assert "wapbox-port" not in core and "wdp-interface-name" not in core


@pytest.mark.parametrize(("binds", "window"), [(1, 10), (2, 64), (3, 256)])
def test_smsc_groups_point_at_the_simulator(kannel: ModuleType, tmp_path: Path,
                                            binds: int, window: int) -> None:
    smscs = [g for g in _groups(_render(kannel, tmp_path, binds=binds, window=window))
             if g["group"] == ["smsc"]]
    assert len(smscs) == binds
    for g in smscs:
        assert g["smsc"] == ["smpp"] and g["smsc-id"] == ["sim"]
        assert g["host"] == ["127.0.0.1"] and g["port"] == ["2775"]
        assert g["transceiver-mode"] == ["true"]
        assert g["smsc-username"] == g["smsc-password"] == ["bench"]
        assert g["max-pending-submits"] == [str(window)]
        assert "throughput" not in g  # unlimited


@pytest.mark.parametrize(("store", "expected"), [("none", None), ("file", "file"),
                                                 ("spool", "spool")])
def test_store(kannel: ModuleType, tmp_path: Path, store: str, expected: str | None) -> None:
    core = _groups(_render(kannel, tmp_path, store=store))[0]
    assert core["dlr-storage"] == ["internal"]
    assert core.get("store-type", [None]) == [expected]


def test_bad_arguments_are_refused(kannel: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="binds"):
        _render(kannel, tmp_path, binds=0)
    with pytest.raises(ValueError, match="store"):
        _render(kannel, tmp_path, store="redis")


def test_sendsms_path_escapes_and_carries_the_index(kannel: ModuleType) -> None:
    path = kannel.sendsms_path(7, "20% off & more", "http://127.0.0.1:9", 3)
    assert path.startswith("/cgi-bin/sendsms?")
    q = urllib.parse.parse_qs(path.partition("?")[2])
    assert q["text"] == ["20% off & more"]
    assert q["to"] == [kannel.e2e.phone(7)] and q["to"][0].startswith("+1")
    assert q["dlr-mask"] == ["3"]
    # Kannel substitutes %d (the DLR type) in the URL it calls back
    assert q["dlr-url"] == ["http://127.0.0.1:9/dlr?i=7&t=%d"]
    assert re.search(r"%25d", path) and "+" not in path.partition("&to=")[2][:3]


@pytest.mark.parametrize(("target", "expected"), [
    (b"/dlr?i=12&t=1", (12, 1)),
    (b"/dlr?t=2&i=0", (0, 2)),
    (b"/dlr?i=12", None),
    (b"/dlr?i=x&t=1", None),
    (b"/dlr", None),
])
def test_parse_dlr_target(kannel: ModuleType, target: bytes,
                          expected: tuple[int, int] | None) -> None:
    assert kannel.parse_dlr_target(target) == expected


def test_main_refuses_without_kannel(kannel: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(kannel, "find_binary", lambda name: None)
    assert kannel.main(["-n", "10"]) == 2
    assert "apt-get install -y kannel" in capsys.readouterr().err


def test_print_config_needs_no_kannel(kannel: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(kannel, "find_binary", lambda name: None)
    assert kannel.main(["--print-config", "--binds", "1", "--window", "64"]) == 0
    groups = _groups(capsys.readouterr().out)
    assert [g["max-pending-submits"] for g in groups if g["group"] == ["smsc"]] == [["64"]]
