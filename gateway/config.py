"""The TOML configuration: msgspec Structs, decoded and validated once at start-up.

Every section is a frozen Struct with ``forbid_unknown_fields``: a typo is an error, not a
silent dead key (the hypercorn ``Config.from_mapping`` trap, STYLE.md §1). Decoding errors
and the semantic checks that run after decoding are raised as :class:`ConfigError`, whose
message starts with the field path in the file's own spelling::

    carriers[0].port: expected `int` <= 65535
    routes[1].carriers[0]: unknown carrier "x"

Secrets (carrier passwords, API tokens) are held in :class:`Secret`, whose ``repr`` never
shows the value, so logging a config object or an exception cannot leak them. Values that
come from the environment (``password_env``, ``token_env``) or from files (``tokens_file``)
are resolved at load time, so a missing variable stops the start with the field's name
rather than failing at the first bind.

Use :func:`load_config` (a file) or :func:`load_config_bytes` (bytes, with an injectable
environment for tests).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from gateway.encoding.options import EncodingOptions
from gateway.marketing.config import LinksConfig, OptinConfig, validate_marketing
from rules.model import ErrorClass
from rules.policy import Policy

if TYPE_CHECKING:
    from gateway.bind import BindSettings
    from gateway.sim import SimSettings

__all__ = [
    "ApiConfig",
    "CarrierConfig",
    "ConfigError",
    "GatewayConfig",
    "LoggingConfig",
    "MetricsConfig",
    "PipelineConfig",
    "RouteConfig",
    "SandboxConfig",
    "Secret",
    "StoreConfig",
    "WebhookConfig",
    "is_loopback",
    "load_config",
    "load_config_bytes",
    "parse_listen",
]


class ConfigError(ValueError):
    """The configuration is invalid; ``path`` names the field (``carriers[0].port``)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class Secret:
    """A string that never shows itself in ``repr``/``str`` (passwords, bearer tokens).

    Call :meth:`reveal` at the one place that needs the value (the bind PDU, the token
    comparison).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


# ---------------------------------------------------------------------------- types

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
NonNegSeconds = Annotated[float, msgspec.Meta(ge=0)]
# SMPP 3.4 §4.1: C-string sizes include the terminating NUL.
SystemId = Annotated[str, msgspec.Meta(min_length=1, max_length=15)]
SystemType = Annotated[str, msgspec.Meta(max_length=12)]
ServiceType = Annotated[str, msgspec.Meta(max_length=5)]
Ton = Annotated[int, msgspec.Meta(ge=0, le=6)]
Npi = Annotated[int, msgspec.Meta(ge=0, le=18)]
Listen = Annotated[str, msgspec.Meta(min_length=1)]
RetentionDays = Annotated[int, msgspec.Meta(ge=0, le=36_500)]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config table: immutable, keyword-only, unknown keys are errors."""


class ApiConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[api]``: the local HTTP API (DESIGN.md "HTTP API")."""

    listen: Listen = "127.0.0.1:8080"
    #: Bearer tokens. Empty = no auth, which is only allowed on a loopback address.
    tokens: tuple[Secret, ...] = ()
    #: Environment variable holding more tokens, comma- or whitespace-separated.
    token_env: str | None = None
    #: File with more tokens, one per line (``#`` comments and blank lines ignored).
    tokens_file: str | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 4 * 1024 * 1024
    #: Largest ``{"messages": [...]}`` batch accepted in one request.
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    header_timeout_s: PositiveSeconds = 10.0
    body_timeout_s: PositiveSeconds = 30.0

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``."""
        return parse_listen(self.listen)

    def token_values(self) -> tuple[str, ...]:
        """Every resolved token (file, env and list), revealed: for ``gateway.api.Api``."""
        return tuple(t.reveal() for t in self.tokens)


class MetricsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[metrics]``: the Prometheus listener."""

    enabled: bool = True
    listen: Listen = "127.0.0.1:9108"

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``."""
        return parse_listen(self.listen)


class StoreConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[store]``: the LMDB environment."""

    path: Annotated[str, msgspec.Meta(min_length=1)] = "./data"
    #: ``fsync``: a 202 means the batch is on disk. ``os``: on the OS page cache only
    #: (survives a process crash, not a power loss), faster.
    durability: Literal["fsync", "os"] = "fsync"
    #: Initial LMDB map size in bytes; grown on demand up to ``max_map_size``.
    map_size: Annotated[int, msgspec.Meta(ge=1 << 20)] = 1 << 30
    max_map_size: Annotated[int, msgspec.Meta(ge=1 << 20)] = 64 << 30
    # Retention (gateway.retention, docs/operations.md "Retention"); 0 = keep forever.
    #: Finished messages go this many days after their last change, with their carrier
    #: ids and idempotency claim (never one in the outbox or awaiting its receipt).
    retention_days: RetentionDays = 30
    #: Events of the feed go after this many days (never one a webhook still needs).
    events_retention_days: RetentionDays = 7
    #: Idempotency claims go after this many days; 0 = as long as their message.
    idempotency_retention_days: RetentionDays = 0
    #: Delivery-error history entries go after this many days, never fewer than
    #: ``rules.error_segment.days`` (a longer window raises it); the entries that decide
    #: the segment stay.
    errors_retention_days: RetentionDays = 30
    #: Short links (their token then answers 404) and recorded clicks go after this many
    #: days; a message's click summary once its message is gone and its last click is
    #: this old.
    links_retention_days: RetentionDays = 90
    #: A retention sweep starts this often.
    retention_interval_s: Annotated[float, msgspec.Meta(ge=1)] = 3600.0


_STAT_KEY = re.compile(r"^(ENROUTE|DELIVRD|EXPIRED|DELETED|UNDELIV|ACCEPTD|UNKNOWN|REJECTD|SKIPPED)"
                       r"(?::(\d{1,3}))?$")


class SandboxConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[sandbox]``: the built-in carrier simulator (``smsgw sim`` takes the same settings)."""

    enabled: bool = False
    listen: Listen = "127.0.0.1:2775"
    #: The HTTP control endpoint (MO and fault injection); None = the SMPP port + 1
    #: (an ephemeral port when that is busy or the SMPP port is 0); port 0 = ephemeral.
    control_listen: Listen | None = None
    system_id: SystemId = "sandbox"
    password: Secret = Secret("sandbox")
    #: Delay between submit_sm and its delivery receipt.
    dlr_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] = 100
    #: Weighted receipt outcomes: ``{DELIVRD = 0.9, "UNDELIV:001" = 0.1}``; a key is a stat,
    #: optionally with the receipt ``err`` after a colon.
    dlr_stats: dict[str, Annotated[float, msgspec.Meta(ge=0)]] = msgspec.field(
        default_factory=lambda: {"DELIVRD": 1.0})
    #: submit_sm per second the simulator accepts before answering ESME_RTHROTTLED; 0 = no limit.
    tps: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    #: Format of the message_id in submit_sm_resp.
    msgid: Literal["hex", "dec"] = "hex"
    #: Random extra receipt delay, 0..this.
    dlr_jitter_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] = 0
    #: Fraction of submits answered with ESME_RSYSERR (fault injection).
    fail_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``."""
        return parse_listen(self.listen)

    def sim_settings(self) -> SimSettings:
        """The ``gateway.sim`` settings for this section (imports gateway.sim, i.e. trio)."""
        from gateway.sim import DlrStat, SimSettings

        host, port = self.address
        stats = []
        for key, weight in self.dlr_stats.items():
            stat, _, err = key.partition(":")
            stats.append(DlrStat(stat=stat, weight=weight, err=err.zfill(3) if err else None))
        return SimSettings(host=host, port=port,
                           accounts={self.system_id: self.password.reveal()},
                           dlr_delay=self.dlr_delay_ms / 1000, dlr_jitter=self.dlr_jitter_ms / 1000,
                           dlr_stats=tuple(stats), tps=self.tps, msgid=self.msgid,
                           fail_rate=self.fail_rate)


class CarrierConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[carriers]]``: one SMPP peer and how we bind to it."""

    #: Used by routes, metric labels and store keys: 1-32 of ``A-Z a-z 0-9 _ . -``.
    name: str
    host: Annotated[str, msgspec.Meta(min_length=1)]
    port: Port = 2775
    system_id: SystemId
    password: Secret | None = None
    #: Environment variable holding the password (resolved at load time).
    password_env: str | None = None
    system_type: SystemType = ""
    service_type: ServiceType = ""
    bind: Literal["transceiver", "transmitter+receiver"] = "transceiver"
    #: Parallel sessions of that kind (a tx+rx bind counts as one).
    binds: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    #: Max unanswered requests per session (domain.md §1.5; Kannel defaults to 10).
    window: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64
    #: Max submit_sm per second for the whole carrier; 0 = no limit.
    tps: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    #: Long messages: concatenation UDH with an 8/16-bit reference, SAR TLVs, or one PDU
    #: with message_payload. Copied into ``encoding.segmentation``.
    segmentation: Literal["udh8", "udh16", "sar", "payload"] = "udh8"
    enquire_link_s: PositiveSeconds = 30.0
    response_timeout_s: PositiveSeconds = 10.0
    bind_timeout_s: PositiveSeconds = 10.0
    #: No PDU from the peer this long -> the link is dead; 0 = off.
    inactivity_timeout_s: NonNegSeconds = 0.0
    reconnect_min_s: PositiveSeconds = 1.0
    reconnect_max_s: PositiveSeconds = 60.0
    tls: bool = False
    tls_ca_file: str | None = None
    #: Verify the carrier's certificate and host name (false: encrypt only, test SMSCs).
    tls_verify: bool = True
    #: Host name to verify the certificate against (default: ``host``).
    tls_server_name: str | None = None
    #: TON/NPI of the sender; None = derived from the address (+digits -> 1/1,
    #: alphanumeric -> 5/0, short code -> 3/0).
    source_ton: Ton | None = None
    source_npi: Npi | None = None
    dest_ton: Ton = 1
    dest_npi: Npi = 1
    #: Sender used when a message has no ``from``.
    default_sender: Annotated[str, msgspec.Meta(min_length=1, max_length=20)] | None = None
    #: How this carrier writes submit_sm_resp message ids; see gateway.receipts.
    message_id_format: Literal["auto", "hex", "dec", "raw"] = "auto"
    #: SMPP registered_delivery (domain.md §1.3): 1 = receipt on success or failure.
    registered_delivery: Annotated[int, msgspec.Meta(ge=0, le=255)] = 1
    #: Validity period in seconds (sent as a relative time); None = the SMSC's default.
    validity_s: Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)] | None = None
    #: ``[carriers.encoding]``: gateway.encoding's options, as is (gsm_packing, latin1,
    #: dcs0, max_parts, smart_encoding, ...); ``segmentation`` is set from the carrier key.
    encoding: EncodingOptions = msgspec.field(default_factory=EncodingOptions)
    #: Receipt ``err`` value -> delivery error class (rules.model.ErrorClass), for this
    #: carrier's vendor numbering (domain.md §4.2: "keep a per-connection mapping table").
    error_codes: dict[str, ErrorClass] = msgspec.field(default_factory=dict)

    @property
    def password_value(self) -> str:
        """The resolved password ("" when neither password nor password_env is set)."""
        return self.password.reveal() if self.password is not None else ""

    def bind_settings(self) -> BindSettings:
        """The ``gateway.bind`` settings for this carrier (imports gateway.bind, i.e. trio)."""
        from gateway.bind import BindSettings

        return BindSettings(
            name=self.name, host=self.host, port=self.port, system_id=self.system_id,
            password=self.password_value, system_type=self.system_type, mode=self.bind,
            binds=self.binds, window=self.window, tps=self.tps,
            enquire_link=self.enquire_link_s, response_timeout=self.response_timeout_s,
            bind_timeout=self.bind_timeout_s, inactivity_timeout=self.inactivity_timeout_s,
            backoff_initial=self.reconnect_min_s, backoff_max=self.reconnect_max_s,
            tls=self.tls, ca_file=self.tls_ca_file, tls_server_hostname=self.tls_server_name,
            tls_verify=self.tls_verify)


class RouteConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[routes]]``: the longest matching E.164 prefix wins; carriers are tried in order."""

    #: ``"+"`` then up to 15 digits; ``"+"`` alone matches every number.
    prefix: str
    carriers: tuple[str, ...]


class PipelineConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[pipeline]``: queues, batching and retries between the API and the binds."""

    #: Messages waiting for a carrier before the API answers 503 (back-pressure).
    outbox_max: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    #: A message still not accepted by a carrier after this long fails (``expired``).
    retry_max_age_s: PositiveSeconds = 86_400.0
    retry_backoff_min_s: PositiveSeconds = 5.0
    retry_backoff_max_s: PositiveSeconds = 600.0
    #: A submit whose fate is unknown (no resp before the link died): mark ``unknown``
    #: (never a duplicate) or ``retry`` (may duplicate).
    unknown_outcome: Literal["unknown", "retry"] = "unknown"
    #: Messages per store commit on accept (group commit).
    accept_batch_max: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1000
    #: PDUs a bind writer coalesces into one send.
    submit_batch_max: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 256
    #: Receipts / MOs per store commit.
    receipt_batch_max: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 512
    #: How long a carrier message id stays matchable by a receipt (domain.md §1.8: 48-72 h).
    carrier_id_ttl_s: PositiveSeconds = 72 * 3600.0


class WebhookConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[[webhooks]]``: POST the event feed to a URL, signed, at least once (gateway.webhooks).

    The secret comes from ``secret_env`` or ``secret_file`` (exactly one), resolved at
    load time into ``secret``; an inline secret is refused so config files can be shared.
    """

    #: Names the delivery cursor in the store and the metric label: like a carrier name.
    name: str
    #: ``https://...`` (certificate verified), or ``http://`` to a loopback address
    #: (beyond loopback only with ``allow_plain_http``: event data holds phone numbers).
    url: Annotated[str, msgspec.Meta(min_length=1)]
    enabled: bool = True
    secret_env: str | None = None
    secret_file: str | None = None
    #: Resolved from ``secret_env`` / ``secret_file``; setting it in the file is an error.
    secret: Secret | None = None
    #: Event type prefixes to send (``["message.", "mo"]``); empty = every event.
    events: tuple[Annotated[str, msgspec.Meta(min_length=1)], ...] = ()
    #: Events per POST (one JSON array).
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    #: Connect + send + answer, per attempt.
    timeout_s: PositiveSeconds = 10.0
    #: Retry delay after a failed attempt: jittered, doubling from min to max.
    backoff_min_s: PositiveSeconds = 1.0
    backoff_max_s: PositiveSeconds = 300.0
    #: A batch refused with a 4xx (not 408/429) this many times in a row is recorded as a
    #: ``webhook.dead_letter`` event and skipped; 0 = never skip (retry until it works).
    dead_letter_after: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: A new endpoint (no stored cursor) starts at the end of the feed (``end``: events
    #: from now on) or replays it from the start (``beginning``).
    start_from: Literal["end", "beginning"] = "end"
    #: CA bundle for an https receiver with a private CA (default: the system's).
    tls_ca_file: str | None = None
    #: Allow ``http://`` to a non-loopback host (the body then crosses the network in clear).
    allow_plain_http: bool = False


class LoggingConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[logging]``."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    #: One JSON object per line (for log shippers) instead of ``key=value`` text.
    json: bool = False
    #: Mask phone numbers in log lines (``+3361*****78``).
    mask_phones: bool = True


class GatewayConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration file; every section has defaults."""

    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    sandbox: SandboxConfig = msgspec.field(default_factory=SandboxConfig)
    carriers: tuple[CarrierConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    rules: Policy = msgspec.field(default_factory=Policy)
    pipeline: PipelineConfig = msgspec.field(default_factory=PipelineConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    #: Branded short links (gateway.marketing.config).
    links: LinksConfig = msgspec.field(default_factory=LinksConfig)
    #: Smart opt-in codes; absent = off (the /v1/optin routes answer 404).
    optin: OptinConfig | None = None
    webhooks: tuple[WebhookConfig, ...] = ()

    def carrier(self, name: str) -> CarrierConfig:
        """The carrier called ``name`` (KeyError if none)."""
        for c in self.carriers:
            if c.name == name:
                return c
        raise KeyError(name)


# --------------------------------------------------------------------------- loading

def load_config(path: str | os.PathLike[str], *,
                env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read, decode and validate the TOML file at ``path``.

    Relative ``tls_ca_file`` and ``tokens_file`` paths are taken relative to the
    config file's directory. Raises :class:`ConfigError`.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError("", f"cannot read {str(p)!r}: {e.strerror or e}") from None
    return load_config_bytes(data, env=os.environ if env is None else env, base_dir=p.parent)


def load_config_bytes(data: bytes | str, *, env: Mapping[str, str],
                      base_dir: str | os.PathLike[str] | None = None) -> GatewayConfig:
    """Decode and validate TOML ``data``; ``env`` resolves ``*_env`` keys (injectable).

    ``base_dir`` anchors relative file paths (default: the current directory).
    Raises :class:`ConfigError`.
    """
    try:
        cfg = msgspec.toml.decode(data, type=GatewayConfig, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _translate(str(e)) from None
    except msgspec.DecodeError as e:
        raise ConfigError("", f"not valid TOML: {e}") from None
    base = Path(base_dir) if base_dir is not None else Path()
    return _validate(cfg, env, base)


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is Secret:
        if not isinstance(obj, str):
            raise TypeError(f"Expected `str`, got `{_toml_type(obj)}`")
        return Secret(obj)
    raise NotImplementedError(typ)


def _toml_type(obj: object) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "array",
            dict: "table"}.get(type(obj), type(obj).__name__)


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]*)`$")


def _translate(message: str) -> ConfigError:
    """msgspec's ``Expected ... - at `$.a[0].b` `` -> ``ConfigError("a[0].b", "expected ...")``."""
    m = _AT.match(message)
    assert m is not None  # the pattern matches any string
    msg, path = m.group("msg"), (m.group("path") or "").lstrip(".")
    if u := _UNKNOWN.match(msg):
        return ConfigError(_join(path, u.group("key")), "unknown key")
    if r := _MISSING.match(msg):
        return ConfigError(_join(path, r.group("key")), "required key is missing")
    return ConfigError(path, msg[:1].lower() + msg[1:])


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -------------------------------------------------------------------- semantic checks

def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``; port 0 = any free port.

    Raises ValueError with a human reason.
    """
    host, sep, port_s = value.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ValueError(f'expected "host:port", got {value!r}')
    port = int(port_s)
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f'IPv6 addresses need brackets: "[{host}]:{port}"')
    if not host:
        raise ValueError(f'no host in {value!r} (use "0.0.0.0:{port}" for all interfaces)')
    return host, port


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127/8, ::1, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything, treat as exposed


def _check_listen(path: str, value: str) -> None:
    try:
        parse_listen(value)
    except ValueError as e:
        raise ConfigError(path, str(e)) from None


def _resolve_path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _validate(cfg: GatewayConfig, env: Mapping[str, str], base: Path) -> GatewayConfig:
    _check_listen("api.listen", cfg.api.listen)
    _check_listen("metrics.listen", cfg.metrics.listen)
    _check_listen("sandbox.listen", cfg.sandbox.listen)
    if cfg.sandbox.control_listen is not None:
        _check_listen("sandbox.control_listen", cfg.sandbox.control_listen)
        if parse_listen(cfg.sandbox.control_listen)[0] != cfg.sandbox.address[0]:
            # The simulator serves both on one host (gateway.sim.SimSettings.host).
            raise ConfigError("sandbox.control_listen", "must use the host of sandbox.listen "
                              f"({cfg.sandbox.address[0]})")
    api = _resolve_api(cfg.api, env, base)
    if not api.tokens and not is_loopback(api.address[0]):
        # Issue 8 security rule: an unauthenticated API is a loopback-only API.
        raise ConfigError("api.tokens", f"the API listens on {api.listen} (beyond loopback), "
                          "so bearer tokens are required (tokens, token_env or tokens_file)")
    if cfg.store.map_size > cfg.store.max_map_size:
        raise ConfigError("store.map_size", f"{cfg.store.map_size} is larger than "
                          f"store.max_map_size ({cfg.store.max_map_size})")
    _check_retention(cfg)
    _check_sandbox(cfg.sandbox)
    carriers = tuple(_resolve_carrier(f"carriers[{i}]", c, env, base)
                     for i, c in enumerate(cfg.carriers))
    _check_routes(cfg.routes, carriers)
    p = cfg.pipeline
    if p.retry_backoff_min_s > p.retry_backoff_max_s:
        raise ConfigError("pipeline.retry_backoff_min_s",
                          f"{p.retry_backoff_min_s} is larger than retry_backoff_max_s "
                          f"({p.retry_backoff_max_s})")
    webhooks = _resolve_webhooks(cfg.webhooks, env, base)
    links, optin = validate_marketing(cfg.links, cfg.optin, env, ConfigError)
    cfg = msgspec.structs.replace(cfg, links=links, optin=optin)
    return msgspec.structs.replace(cfg, api=api, carriers=carriers, webhooks=webhooks)


def _resolve_api(api: ApiConfig, env: Mapping[str, str], base: Path) -> ApiConfig:
    tokens = list(api.tokens)
    for i, t in enumerate(tokens):
        if not t:
            raise ConfigError(f"api.tokens[{i}]", "empty token")
    if api.token_env is not None:
        value = env.get(api.token_env)
        if value is None:
            raise ConfigError("api.token_env",
                              f"environment variable {api.token_env!r} is not set")
        found = [Secret(t) for t in re.split(r"[\s,]+", value) if t]
        if not found:
            raise ConfigError("api.token_env",
                              f"environment variable {api.token_env!r} holds no token")
        tokens += found
    if api.tokens_file is not None:
        path = _resolve_path(base, api.tokens_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError("api.tokens_file", f"cannot read {str(path)!r}: {e}") from None
        found = [Secret(s) for line in lines if (s := line.split("#", 1)[0].strip())]
        if not found:
            raise ConfigError("api.tokens_file", f"{str(path)!r} holds no token")
        tokens += found
    return msgspec.structs.replace(api, tokens=tuple(tokens))


def _check_retention(cfg: GatewayConfig) -> None:
    st = cfg.store
    if st.retention_days and st.idempotency_retention_days > st.retention_days:
        # A claim goes with its message: it cannot outlive it (and a claim left pointing
        # at a deleted message would refuse every reuse of its key).
        raise ConfigError("store.idempotency_retention_days",
                          f"{st.idempotency_retention_days} is longer than "
                          f"store.retention_days ({st.retention_days}): a claim goes with "
                          "its message")


def _check_sandbox(sb: SandboxConfig) -> None:
    if not sb.password:
        raise ConfigError("sandbox.password", "must not be empty")
    if not sb.dlr_stats:
        raise ConfigError("sandbox.dlr_stats", "needs at least one outcome, e.g. {DELIVRD = 1.0}")
    for key in sb.dlr_stats:
        if not _STAT_KEY.match(key):
            raise ConfigError(f"sandbox.dlr_stats.{key}",
                              'unknown receipt stat (expected DELIVRD, UNDELIV, EXPIRED, '
                              'REJECTD, ... optionally with ":err", e.g. "UNDELIV:001")')
    if sum(sb.dlr_stats.values()) <= 0:
        raise ConfigError("sandbox.dlr_stats", "weights sum to 0")


def _resolve_carrier(path: str, c: CarrierConfig, env: Mapping[str, str],
                     base: Path) -> CarrierConfig:
    if c.password is not None and c.password_env is not None:
        raise ConfigError(f"{path}.password_env", "set password or password_env, not both")
    if c.password_env is not None:
        value = env.get(c.password_env)
        if value is None:
            raise ConfigError(f"{path}.password_env",
                              f"environment variable {c.password_env!r} is not set")
        c = msgspec.structs.replace(c, password=Secret(value))
    if c.password is not None and len(c.password.reveal()) > 8:
        # SMPP 3.4 §4.1.1: password is a C-string of at most 9 octets with its NUL.
        raise ConfigError(f"{path}.{'password_env' if c.password_env else 'password'}",
                          "longer than 8 characters (SMPP 3.4 limit)")
    if c.reconnect_min_s > c.reconnect_max_s:
        raise ConfigError(f"{path}.reconnect_min_s", f"{c.reconnect_min_s} is larger than "
                          f"reconnect_max_s ({c.reconnect_max_s})")
    if c.tls_ca_file is not None:
        if not c.tls:
            raise ConfigError(f"{path}.tls_ca_file", "set, but tls = false")
        ca = _resolve_path(base, c.tls_ca_file)
        if not ca.is_file():
            raise ConfigError(f"{path}.tls_ca_file", f"file not found: {str(ca)!r}")
        c = msgspec.structs.replace(c, tls_ca_file=str(ca))
    if "" in c.error_codes:
        raise ConfigError(f"{path}.error_codes", 'empty error code ""')
    if c.encoding.segmentation != c.segmentation:
        if c.encoding.segmentation != _DEFAULT_SEGMENTATION:
            raise ConfigError(f"{path}.encoding.segmentation",
                              "set `segmentation` on the carrier, not in [carriers.encoding]")
        c = msgspec.structs.replace(
            c, encoding=msgspec.structs.replace(c.encoding, segmentation=c.segmentation))
    return c


_DEFAULT_SEGMENTATION = EncodingOptions().segmentation


# Carrier names end up in metric labels and store keys: keep them boring.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_PREFIX = re.compile(r"^\+[0-9]{0,15}$")


def _check_routes(routes: tuple[RouteConfig, ...], carriers: tuple[CarrierConfig, ...]) -> None:
    seen_names: set[str] = set()
    for i, c in enumerate(carriers):
        if not _NAME.match(c.name):
            raise ConfigError(f"carriers[{i}].name", f"{c.name!r} is not a valid name: use 1-32 "
                              "letters, digits, '_', '.' or '-', starting with a letter or digit")
        if c.name in seen_names:
            raise ConfigError(f"carriers[{i}].name", f'duplicate carrier name "{c.name}"')
        seen_names.add(c.name)
    seen_prefixes: dict[str, int] = {}
    for i, r in enumerate(routes):
        if not _PREFIX.match(r.prefix):
            raise ConfigError(f"routes[{i}].prefix", f"{r.prefix!r} is not an E.164 prefix: "
                              'use "+" and up to 15 digits, e.g. "+33" ("+" alone = every number)')
        if r.prefix in seen_prefixes:
            raise ConfigError(f"routes[{i}].prefix", f'duplicate prefix "{r.prefix}" '
                              f"(also routes[{seen_prefixes[r.prefix]}])")
        seen_prefixes[r.prefix] = i
        if not r.carriers:
            raise ConfigError(f"routes[{i}].carriers", "needs at least one carrier")
        for j, name in enumerate(r.carriers):
            if name not in seen_names:
                raise ConfigError(f"routes[{i}].carriers[{j}]", f'unknown carrier "{name}"')
            if name in r.carriers[:j]:
                raise ConfigError(f"routes[{i}].carriers[{j}]", f'carrier "{name}" listed twice')


_MIN_SECRET = 16  # bytes: an HMAC key shorter than this is guessable offline


def _resolve_webhooks(hooks: tuple[WebhookConfig, ...], env: Mapping[str, str],
                      base: Path) -> tuple[WebhookConfig, ...]:
    from urllib.parse import urlsplit

    out: list[WebhookConfig] = []
    names: set[str] = set()
    for i, h in enumerate(hooks):
        path = f"webhooks[{i}]"
        if not _NAME.match(h.name):
            raise ConfigError(f"{path}.name", f"{h.name!r} is not a valid name: use 1-32 "
                              "letters, digits, '_', '.' or '-', starting with a letter or digit")
        if h.name in names:
            raise ConfigError(f"{path}.name", f'duplicate webhook name "{h.name}"')
        names.add(h.name)
        url = urlsplit(h.url)
        try:
            port = url.port
        except ValueError:
            port = -1
        if url.scheme not in ("http", "https") or not url.hostname or port == -1 \
                or url.username or url.password or url.fragment:
            raise ConfigError(f"{path}.url", f"{h.url!r} is not an http(s) URL "
                              "(scheme://host[:port]/path, no user info or fragment)")
        if url.scheme == "http" and not (is_loopback(url.hostname) or h.allow_plain_http):
            raise ConfigError(f"{path}.url", "plain http to a non-loopback host sends phone "
                              "numbers in clear: use https, or set allow_plain_http = true")
        if h.secret is not None:
            raise ConfigError(f"{path}.secret", "set secret_env or secret_file, not secret")
        if (h.secret_env is None) == (h.secret_file is None):
            raise ConfigError(f"{path}.secret_env", "set exactly one of secret_env and "
                              "secret_file")
        secret: Secret | None = None
        if h.enabled:  # a disabled endpoint needs no secret at hand
            secret = _webhook_secret(path, h, env, base)
        if h.backoff_min_s > h.backoff_max_s:
            raise ConfigError(f"{path}.backoff_min_s", f"{h.backoff_min_s} is larger than "
                              f"backoff_max_s ({h.backoff_max_s})")
        ca = h.tls_ca_file
        if ca is not None:
            if url.scheme != "https":
                raise ConfigError(f"{path}.tls_ca_file", "set, but the url is not https")
            ca_path = _resolve_path(base, ca)
            if not ca_path.is_file():
                raise ConfigError(f"{path}.tls_ca_file", f"file not found: {str(ca_path)!r}")
            ca = str(ca_path)
        out.append(msgspec.structs.replace(h, secret=secret, tls_ca_file=ca))
    return tuple(out)


def _webhook_secret(path: str, h: WebhookConfig, env: Mapping[str, str], base: Path) -> Secret:
    if h.secret_env is not None:
        value = env.get(h.secret_env)
        if value is None:
            raise ConfigError(f"{path}.secret_env",
                              f"environment variable {h.secret_env!r} is not set")
        where = f"{path}.secret_env"
    else:
        assert h.secret_file is not None
        file = _resolve_path(base, h.secret_file)
        try:
            value = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}.secret_file", f"cannot read {str(file)!r}: {e}") from None
        where = f"{path}.secret_file"
    if len(value.encode()) < _MIN_SECRET:
        raise ConfigError(where, f"the secret is shorter than {_MIN_SECRET} bytes")
    return Secret(value)
