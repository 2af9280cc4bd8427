"""Structured logging on top of the stdlib, with phone numbers masked.

Call sites pass fields as keywords; they become ``key=value`` pairs (text) or JSON keys::

    log = get_logger(__name__).bind(carrier="acme")
    log.warning("submit rejected", to="+33612345678", status=0x58)
    # 2026-01-22T15:39:12.123Z WARNING gateway.bind submit rejected carrier=acme
    #   to=+3361*****78 status=88

Phone numbers are personal data, and logs travel further than the store does (shippers,
tickets, screenshots), so they are masked by default (``[logging] mask_phones``):
values of phone-like fields (``to``, ``phone``, ``source_addr`` ...) and ``+digits``
runs inside messages. The country code and the first digits stay readable for routing
questions; the last two help to tell numbers apart in one incident.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

__all__ = [
    "PHONE_FIELDS",
    "JsonFormatter",
    "StructLogger",
    "TextFormatter",
    "configure_logging",
    "get_logger",
    "mask_phone",
    "mask_phones_in",
]

#: Field names whose values are phone numbers (masked whatever they look like).
PHONE_FIELDS = frozenset({
    "to", "from", "from_", "phone", "msisdn", "recipient", "sender_number", "source_addr",
    "destination_addr", "dest", "number", "e164",
})

# "+" and 7..15 digits, optionally with spaces/dashes between digit groups, not inside a
# longer alphanumeric run.
_PLUS_NUMBER = re.compile(r"(?<![\w+])\+\d(?:[ \-]?\d){6,14}(?!\d)")
_NUMBER_CHARS = frozenset("0123456789+ -.()")
_MIN_MASKED_DIGITS = 7   # shorter: short codes and alphanumeric senders are not personal
_KEEP_HEAD = 4
_KEEP_TAIL = 2


def mask_phone(value: str) -> str:
    """``+33612345678`` -> ``+3361*****78``. Short codes (< 7 digits) and text stay as is."""
    s = str(value)
    digits = [c for c in s if c.isdigit()]
    if len(digits) < _MIN_MASKED_DIGITS or not set(s.strip()) <= _NUMBER_CHARS:
        # Too short, or not only a number: an alphanumeric sender or free text.
        return s
    head = "+" if s.strip().startswith("+") else ""
    n = len(digits)
    return (head + "".join(digits[:_KEEP_HEAD]) + "*" * (n - _KEEP_HEAD - _KEEP_TAIL)
            + "".join(digits[n - _KEEP_TAIL:]))


def mask_phones_in(text: str) -> str:
    """Mask every ``+E.164`` number inside free text."""
    return _PLUS_NUMBER.sub(lambda m: mask_phone(m.group(0)), text)


def _masked_fields(fields: Mapping[str, Any], mask: bool) -> dict[str, Any]:
    if not mask:
        return dict(fields)
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k in PHONE_FIELDS and isinstance(v, str):
            out[k] = mask_phone(v)
        elif isinstance(v, str):
            out[k] = mask_phones_in(v)
        else:
            out[k] = v
    return out


def _timestamp(record: logging.LogRecord) -> str:
    t = datetime.fromtimestamp(record.created, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger message key=value ...`` (values quoted when they need it)."""

    def __init__(self, *, mask_phones: bool = True) -> None:
        super().__init__()
        self.mask_phones = mask_phones

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if self.mask_phones:
            msg = mask_phones_in(msg)
        parts = [_timestamp(record), record.levelname, record.name, msg]
        for k, v in _masked_fields(_fields(record), self.mask_phones).items():
            parts.append(f"{k}={_text_value(v)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(v: object) -> str:
    s = v if isinstance(v, str) else repr(v) if isinstance(v, bytes | float) else str(v)
    if s == "" or any(c in s for c in ' ="\n\t'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


_JSON_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the fields, ``exc``."""

    def __init__(self, *, mask_phones: bool = True) -> None:
        super().__init__()
        self.mask_phones = mask_phones
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if self.mask_phones:
            msg = mask_phones_in(msg)
        obj: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower(),
                               "logger": record.name, "msg": msg}
        for k, v in _masked_fields(_fields(record), self.mask_phones).items():
            # a field never overwrites ts/level/logger/msg/exc: it gets a trailing "_"
            obj[k + "_" if k in _JSON_RESERVED else k] = v.hex() if isinstance(v, bytes) else v
        if record.exc_info:
            obj["exc"] = "".join(traceback.format_exception(*record.exc_info))
        return self._encoder.encode(obj).decode()


class StructLogger:
    """A logger whose calls take fields as keywords: ``log.info("bound", carrier="a")``.

    ``exc_info``, ``stack_info`` and ``stacklevel`` keep their stdlib meaning; every other
    keyword is a field (``level`` and ``msg`` included: the message is positional-only).
    """

    __slots__ = ("fields", "logger")

    def __init__(self, logger: logging.Logger, fields: Mapping[str, Any] | None = None) -> None:
        self.logger = logger
        self.fields: dict[str, Any] = dict(fields or {})

    def bind(self, **fields: Any) -> StructLogger:
        """A logger that adds ``fields`` to every line (e.g. the carrier and bind ids)."""
        return StructLogger(self.logger, {**self.fields, **fields})

    def is_enabled_for(self, level: int) -> bool:
        """Whether a call at ``level`` would be logged (skip building costly fields)."""
        return self.logger.isEnabledFor(level)

    def log(self, level: int, msg: str, /, *args: object, exc_info: Any = None,
            stack_info: bool = False, stacklevel: int = 1, **fields: Any) -> None:
        """Log ``msg % args`` at ``level`` with ``fields``."""
        if self.logger.isEnabledFor(level):
            self.logger.log(level, msg, *args, exc_info=exc_info, stack_info=stack_info,
                            stacklevel=stacklevel + 1,
                            extra={"fields": {**self.fields, **fields}})

    def debug(self, msg: str, /, *args: object, **fields: Any) -> None:
        """Log at DEBUG."""
        self.log(logging.DEBUG, msg, *args, stacklevel=2, **fields)

    def info(self, msg: str, /, *args: object, **fields: Any) -> None:
        """Log at INFO."""
        self.log(logging.INFO, msg, *args, stacklevel=2, **fields)

    def warning(self, msg: str, /, *args: object, **fields: Any) -> None:
        """Log at WARNING."""
        self.log(logging.WARNING, msg, *args, stacklevel=2, **fields)

    def error(self, msg: str, /, *args: object, **fields: Any) -> None:
        """Log at ERROR."""
        self.log(logging.ERROR, msg, *args, stacklevel=2, **fields)

    def exception(self, msg: str, /, *args: object, **fields: Any) -> None:
        """Log at ERROR with the current exception's traceback."""
        fields.setdefault("exc_info", True)
        self.log(logging.ERROR, msg, *args, stacklevel=2, **fields)

    def critical(self, msg: str, /, *args: object, **fields: Any) -> None:
        """Log at CRITICAL."""
        self.log(logging.CRITICAL, msg, *args, stacklevel=2, **fields)


def get_logger(name: str) -> StructLogger:
    """The structured logger for ``name`` (use ``__name__``)."""
    return StructLogger(logging.getLogger(name))


_HANDLER_MARK = "_smsgw_handler"


def configure_logging(level: str = "info", *, json: bool = False, mask_phones: bool = True,
                      stream: IO[str] | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing the one installed before).

    Idempotent: calling it again (tests, reloads) swaps the handler instead of adding one.
    Returns the handler.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(mask_phones=mask_phones) if json
                         else TextFormatter(mask_phones=mask_phones))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
