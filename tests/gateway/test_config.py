"""gateway.config: the shipped files load, and every invalid kind names its exact path."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.config import (
    ConfigError,
    GatewayConfig,
    Secret,
    is_loopback,
    load_config,
    load_config_bytes,
    parse_listen,
)
from gateway.encoding.options import EncodingOptions
from rules.model import ErrorClass

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "config" / "gateway.toml"
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.toml"))
EXAMPLE_ENV = {"ACME_SMPP_PASSWORD": "acmepw", "BACKUP_SMPP_PASSWORD": "bkpw",
               "SMSGW_API_TOKENS": "tok1, tok2"}

CARRIER = """
[[carriers]]
name = "a"
host = "127.0.0.1"
system_id = "sys"
password = "pw"
"""
ROUTE = """
[[routes]]
prefix = "+"
carriers = ["a"]
"""


def load(text: str, env: dict[str, str] | None = None) -> GatewayConfig:
    return load_config_bytes(text, env=env or {})


# ------------------------------------------------------------------ shipped files

def test_default_config_loads() -> None:
    cfg = load_config(DEFAULT, env={})
    assert cfg.api.address == ("127.0.0.1", 8080)
    assert cfg.api.tokens == ()
    assert cfg.metrics.address == ("127.0.0.1", 9108)
    assert cfg.store.path == "./data"
    assert cfg.store.durability == "fsync"
    assert cfg.sandbox.enabled
    assert cfg.sandbox.address == ("127.0.0.1", 2775)
    assert cfg.sandbox.password.reveal() == "sandbox"
    [carrier] = cfg.carriers
    assert (carrier.name, carrier.host, carrier.port) == ("sandbox", "127.0.0.1", 2775)
    assert carrier.password_value == "sandbox"
    assert cfg.carrier("sandbox") is carrier
    assert [(r.prefix, r.carriers) for r in cfg.routes] == [("+", ("sandbox",))]


def test_default_config_equals_the_struct_defaults_where_it_claims_to() -> None:
    """The default file documents the defaults: its carrier equals a bare carrier's."""
    cfg = load_config(DEFAULT, env={})
    bare = load(CARRIER.replace('"a"', '"sandbox"', 1).replace('"sys"', '"sandbox"')
                .replace('"pw"', '"sandbox"') + ROUTE.replace('"a"', '"sandbox"'))
    assert cfg.carriers == bare.carriers
    assert cfg.pipeline == bare.pipeline
    assert cfg.logging == bare.logging
    assert cfg.api == bare.api
    assert cfg.store == bare.store


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    cfg = load_config(path, env=EXAMPLE_ENV)
    assert cfg.carriers


def test_real_carrier_example() -> None:
    cfg = load_config(ROOT / "config" / "examples" / "real-carrier.toml", env=EXAMPLE_ENV)
    acme = cfg.carrier("acme")
    assert acme.tls and acme.bind == "transmitter+receiver"
    assert acme.password_value == "acmepw"
    assert cfg.carrier("backup").password_value == "bkpw"
    assert [t.reveal() for t in cfg.api.tokens] == ["tok1", "tok2"]
    assert [r.carriers for r in cfg.routes] == [("backup", "acme"), ("acme", "backup")]
    assert acme.error_codes["005"] is ErrorClass.DISCONNECTED
    assert cfg.carrier("backup").encoding.segmentation == "sar"


def test_empty_file_is_all_defaults() -> None:
    cfg = load("")
    assert cfg == GatewayConfig()
    assert not cfg.sandbox.enabled and cfg.carriers == ()


# ----------------------------------------------------------------------- invalid kinds

INVALID: list[tuple[str, str, dict[str, str], str, str]] = [
    # id, toml, env, expected path, words in the reason
    ("unknown top-level key", "bogus = 1", {}, "bogus", "unknown key"),
    ("unknown section key", "[api]\nlisten_on = '1.2.3.4:1'", {}, "api.listen_on", "unknown key"),
    ("unknown carrier key", CARRIER + "widnow = 3\n", {}, "carriers[0].widnow", "unknown key"),
    ("unknown key in 2nd carrier", CARRIER + CARRIER.replace('"a"', '"b"') + "tsp = 1\n", {},
     "carriers[1].tsp", "unknown key"),
    ("unknown encoding key", CARRIER + "[carriers.encoding]\nmax_segments = 3\n", {},
     "carriers[0].encoding.max_segments", "unknown key"),
    ("unknown route key", CARRIER + ROUTE + "weight = 2\n", {}, "routes[0].weight",
     "unknown key"),
    ("unknown rules key", "[rules]\nquiet_hourz = true", {}, "rules.quiet_hourz", "unknown key"),
    ("wrong type port", CARRIER + 'port = "2775"\n', {}, "carriers[0].port",
     "expected `int`, got `str`"),
    ("wrong type bool", "[sandbox]\nenabled = 'yes'", {}, "sandbox.enabled", "expected `bool`"),
    ("wrong type token", "[api]\ntokens = [1]", {}, "api.tokens[0]", "expected `str`, got `int`"),
    ("wrong type section", "api = 3", {}, "api", "expected `object`"),
    ("window too large", CARRIER + "window = 1025\n", {}, "carriers[0].window", "<= 1024"),
    ("window zero", CARRIER + "window = 0\n", {}, "carriers[0].window", ">= 1"),
    ("binds zero", CARRIER + "binds = 0\n", {}, "carriers[0].binds", ">= 1"),
    ("negative tps", CARRIER + "tps = -1\n", {}, "carriers[0].tps", ">= 0"),
    ("max_parts 0", CARRIER + "[carriers.encoding]\nmax_parts = 0\n", {},
     "carriers[0].encoding.max_parts", ">= 1"),
    ("max_parts 256", CARRIER + "[carriers.encoding]\nmax_parts = 256\n", {},
     "carriers[0].encoding.max_parts", "<= 255"),
    ("port out of range", CARRIER + "port = 70000\n", {}, "carriers[0].port", "<= 65535"),
    ("bad durability", "[store]\ndurability = 'sometimes'", {}, "store.durability",
     "invalid enum value 'sometimes'"),
    ("bad bind kind", CARRIER + "bind = 'receiver'\n", {}, "carriers[0].bind",
     "invalid enum value"),
    ("bad segmentation", CARRIER + "segmentation = 'udh7'\n", {}, "carriers[0].segmentation",
     "invalid enum value"),
    ("bad msgid format", CARRIER + "message_id_format = 'b64'\n", {},
     "carriers[0].message_id_format", "invalid enum value"),
    ("missing host", '[[carriers]]\nname = "a"\nsystem_id = "s"\n', {}, "carriers[0].host",
     "required key is missing"),
    ("bad carrier name", CARRIER.replace('"a"', '"a b"'), {}, "carriers[0].name",
     "not a valid name"),
    ("system_id too long", CARRIER.replace('"sys"', '"s234567890123456"'), {},
     "carriers[0].system_id", "length <= 15"),
    ("route prefix without +", CARRIER + '[[routes]]\nprefix = "33"\ncarriers = ["a"]\n', {},
     "routes[0].prefix", "not an E.164 prefix"),
    ("unknown route carrier",
     CARRIER + ROUTE + '[[routes]]\nprefix = "+1"\ncarriers = ["a", "x"]\n', {},
     "routes[1].carriers[1]", 'unknown carrier "x"'),
    ("empty route carriers", CARRIER + '[[routes]]\nprefix = "+1"\ncarriers = []\n', {},
     "routes[0].carriers", "at least one"),
    ("carrier twice in a route", CARRIER + '[[routes]]\nprefix = "+"\ncarriers = ["a", "a"]\n',
     {}, "routes[0].carriers[1]", "listed twice"),
    ("duplicate prefix", CARRIER + ROUTE + ROUTE, {}, "routes[1].prefix", 'duplicate prefix "+"'),
    ("duplicate carrier", CARRIER + CARRIER, {}, "carriers[1].name", 'duplicate carrier name "a"'),
    ("missing password_env var", CARRIER.replace('password = "pw"', 'password_env = "PW_VAR"'),
     {}, "carriers[0].password_env", "'PW_VAR' is not set"),
    ("password and password_env", CARRIER + 'password_env = "PW_VAR"\n', {"PW_VAR": "x"},
     "carriers[0].password_env", "not both"),
    ("password too long", CARRIER.replace('"pw"', '"123456789"'), {}, "carriers[0].password",
     "longer than 8"),
    ("env password too long", CARRIER.replace('password = "pw"', 'password_env = "PW"'),
     {"PW": "123456789"}, "carriers[0].password_env", "longer than 8"),
    ("reconnect min > max", CARRIER + "reconnect_min_s = 10.0\nreconnect_max_s = 5.0\n", {},
     "carriers[0].reconnect_min_s", "larger than reconnect_max_s"),
    ("tls_ca_file missing", CARRIER + "tls = true\ntls_ca_file = '/nonexistent/ca.pem'\n", {},
     "carriers[0].tls_ca_file", "file not found"),
    ("tls_ca_file without tls", CARRIER + "tls_ca_file = '/etc/hostname'\n", {},
     "carriers[0].tls_ca_file", "tls = false"),
    ("non-loopback API without tokens", "[api]\nlisten = '0.0.0.0:8080'", {}, "api.tokens",
     "tokens are required"),
    ("hostname API without tokens", "[api]\nlisten = 'gw.example.com:8080'", {}, "api.tokens",
     "beyond loopback"),
    ("missing token_env var", "[api]\ntoken_env = 'TOKS'", {}, "api.token_env",
     "'TOKS' is not set"),
    ("empty token_env var", "[api]\ntoken_env = 'TOKS'", {"TOKS": " , "}, "api.token_env",
     "no token"),
    ("missing tokens_file", "[api]\ntokens_file = '/nonexistent/tokens'", {}, "api.tokens_file",
     "cannot read"),
    ("empty token", "[api]\ntokens = ['']", {}, "api.tokens[0]", "empty token"),
    ("listen without port", "[api]\nlisten = '127.0.0.1'", {}, "api.listen", "host:port"),
    ("listen bad port", "[metrics]\nlisten = '127.0.0.1:99999'", {}, "metrics.listen",
     "out of range"),
    ("listen v6 without brackets", "[sandbox]\nlisten = '::1:2775'", {}, "sandbox.listen",
     "brackets"),
    ("listen empty host", "[api]\nlisten = ':8080'", {}, "api.listen", "no host"),
    ("map_size > max", "[store]\nmap_size = 2097152\nmax_map_size = 1048576", {},
     "store.map_size", "larger than"),
    ("map_size tiny", "[store]\nmap_size = 10", {}, "store.map_size", ">= 1048576"),
    ("unknown dlr stat", "[sandbox]\ndlr_stats = { DELIVERED = 1.0 }", {},
     "sandbox.dlr_stats.DELIVERED", "unknown receipt stat"),
    ("negative dlr weight", "[sandbox]\ndlr_stats = { DELIVRD = -1.0 }", {},
     "sandbox.dlr_stats[...]", ">= 0"),
    ("zero dlr weights", "[sandbox]\ndlr_stats = { DELIVRD = 0.0 }", {}, "sandbox.dlr_stats",
     "sum to 0"),
    ("bad unknown_outcome", "[pipeline]\nunknown_outcome = 'drop'", {},
     "pipeline.unknown_outcome", "invalid enum value"),
    ("retry backoff min > max", "[pipeline]\nretry_backoff_min_s = 9.0\nretry_backoff_max_s = 1.0",
     {}, "pipeline.retry_backoff_min_s", "larger than"),
    ("bad log level", "[logging]\nlevel = 'verbose'", {}, "logging.level", "invalid enum value"),
    ("source_ton out of range", CARRIER + "source_ton = 7\n", {}, "carriers[0].source_ton",
     "<= 6"),
    ("validity too short", CARRIER + "validity_s = 5\n", {}, "carriers[0].validity_s", ">= 60"),
    ("error_codes wrong type", CARRIER + "[carriers.error_codes]\n'001' = 1\n", {},
     "carriers[0].error_codes[...]", "expected `str`"),
    ("error_codes unknown class", CARRIER + "[carriers.error_codes]\n'001' = 'soft'\n", {},
     "carriers[0].error_codes[...]", "invalid enum value 'soft'"),
    ("packed needs gsm dcs0",
     CARRIER + "[carriers.encoding]\ngsm_packing = 'packed'\ndcs0 = 'latin1'\n", {},
     "carriers[0].encoding", "requires dcs0 = 'gsm'"),
    ("segmentation in encoding", CARRIER + "[carriers.encoding]\nsegmentation = 'sar'\n", {},
     "carriers[0].encoding.segmentation", "on the carrier"),
    ("bad national language",
     CARRIER + "[carriers.encoding]\nnational_languages = { TR = 'klingon' }\n", {},
     "carriers[0].encoding.national_languages[...]", "invalid enum value"),
]


@pytest.mark.parametrize(("toml", "env", "path", "reason"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_config_names_the_path(toml: str, env: dict[str, str], path: str,
                                       reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(toml, env)
    err = info.value
    assert err.path == path, str(err)
    assert reason in err.reason, str(err)
    assert str(err) == f"{path}: {err.reason}"


def test_invalid_toml_syntax() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load("[api\nlisten = ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", env={})


# ------------------------------------------------------------------ resolution, secrets

def test_password_env_is_resolved() -> None:
    cfg = load(CARRIER.replace('password = "pw"', 'password_env = "PW"'), {"PW": "s3cret"})
    assert cfg.carriers[0].password_value == "s3cret"


def test_secrets_never_in_repr() -> None:
    cfg = load(CARRIER.replace('password = "pw"', 'password_env = "PW"')
               + "[api]\ntokens = ['tok-abc']\n", {"PW": "s3cret"})
    text = repr(cfg) + str(cfg)
    assert "s3cret" not in text and "tok-abc" not in text
    assert "Secret('********')" in text
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert len({Secret("a"), Secret("a")}) == 1


def test_tokens_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "tokens.txt").write_text("# ops\nalpha\n\nbeta  # ci\n")
    conf = tmp_path / "gw.toml"
    conf.write_text("[api]\nlisten = '0.0.0.0:8080'\ntokens = ['zero']\n"
                    "tokens_file = 'tokens.txt'\n")
    cfg = load_config(conf, env={})
    assert cfg.api.token_values() == ("zero", "alpha", "beta")


def test_tls_ca_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    conf = tmp_path / "gw.toml"
    conf.write_text(CARRIER + "tls = true\ntls_ca_file = 'ca.pem'\n")
    cfg = load_config(conf, env={})
    assert cfg.carriers[0].tls_ca_file == str(tmp_path / "ca.pem")


def test_token_env_splits_on_commas_and_spaces() -> None:
    cfg = load("[api]\nlisten = '[::]:80'\ntoken_env = 'T'", {"T": "a,b c\n d"})
    assert [t.reveal() for t in cfg.api.tokens] == ["a", "b", "c", "d"]
    assert cfg.api.address == ("::", 80)


def test_loopback_api_without_tokens_is_fine() -> None:
    for listen in ("127.0.0.1:1", "127.1.2.3:1", "localhost:1", "[::1]:1"):
        assert load(f"[api]\nlisten = '{listen}'").api.listen == listen


def test_config_is_frozen() -> None:
    cfg = load(CARRIER)
    with pytest.raises(AttributeError):
        cfg.carriers[0].window = 3  # type: ignore[misc]
    with pytest.raises(KeyError):
        cfg.carrier("nope")


def test_structs_round_trip_without_secrets() -> None:
    """The effective config can be dumped (e.g. for debugging) without leaking secrets."""
    cfg = load(CARRIER)
    dumped = msgspec.json.encode(cfg, enc_hook=repr)
    assert b'"pw"' not in dumped and b"********" in dumped


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)),
    ("gw.example:443", ("gw.example", 443)), ("0.0.0.0:65535", ("0.0.0.0", 65535)),
])
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["", "8080", "host:", "host:x", "[zz]:1", "h:65536", "a:b:1"])
def test_parse_listen_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


@pytest.mark.parametrize(("host", "loop"), [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.com", False),
])
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_encoding_options_embedded() -> None:
    cfg = load(CARRIER + "segmentation = 'udh16'\n[carriers.encoding]\nmax_parts = 4\n"
               "smart_encoding = true\nnational_languages = { TR = 'turkish' }\n")
    enc = cfg.carriers[0].encoding
    assert isinstance(enc, EncodingOptions)
    assert (enc.segmentation, enc.max_parts, enc.smart_encoding) == ("udh16", 4, True)
    assert enc.national_languages == {"TR": "turkish"}
    same = load(CARRIER + "segmentation = 'sar'\n[carriers.encoding]\nsegmentation = 'sar'\n")
    assert same.carriers[0].encoding.segmentation == "sar"


def test_sandbox_to_sim_settings() -> None:
    cfg = load("[sandbox]\nenabled = true\nlisten = '127.0.0.1:0'\nsystem_id = 'u'\n"
               "password = 'p'\ndlr_delay_ms = 250\n"
               "dlr_stats = { DELIVRD = 3.0, 'UNDELIV:1' = 1.0 }\nmsgid = 'dec'\n")
    sim = cfg.sandbox.sim_settings()
    assert (sim.host, sim.port, sim.accounts, sim.dlr_delay, sim.msgid) == (
        "127.0.0.1", 0, {"u": "p"}, 0.25, "dec")
    assert [(d.stat, d.weight, d.err) for d in sim.dlr_stats] == [
        ("DELIVRD", 3.0, None), ("UNDELIV", 1.0, "001")]


def test_carrier_to_bind_settings() -> None:
    cfg = load(CARRIER + "bind = 'transmitter+receiver'\nbinds = 2\nwindow = 10\ntps = 5.0\n"
               "reconnect_min_s = 2.0\nreconnect_max_s = 9.0\ntls = true\ntls_verify = false\n"
               "tls_server_name = 'smpp.example'\n")
    b = cfg.carriers[0].bind_settings()
    assert (b.name, b.host, b.port, b.system_id, b.password) == ("a", "127.0.0.1", 2775, "sys",
                                                                 "pw")
    assert (b.mode, b.binds, b.window, b.tps) == ("transmitter+receiver", 2, 10, 5.0)
    assert (b.backoff_initial, b.backoff_max, b.tls, b.tls_server_hostname) == (
        2.0, 9.0, True, "smpp.example")
    assert b.tls_verify is False


def test_container_config_requires_tokens_from_env() -> None:
    """The Dockerfile's config listens on 0.0.0.0: no SMSGW_API_TOKENS, no start."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    [path] = [line.split("SMSGW_CONFIG=", 1)[1].split()[0]
              for line in dockerfile.splitlines() if "SMSGW_CONFIG=" in line]
    local = ROOT / path.removeprefix("/app/")
    with pytest.raises(ConfigError) as info:
        load_config(local, env={})
    assert info.value.path == "api.token_env"
    cfg = load_config(local, env={"SMSGW_API_TOKENS": "t1"})
    assert cfg.api.address == ("0.0.0.0", 8080) and cfg.store.path == "/data"
    assert "USER smsgw" in dockerfile and 'VOLUME ["/data"]' in dockerfile
    assert "/healthz" in dockerfile
