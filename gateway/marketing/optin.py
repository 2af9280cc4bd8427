"""Smart opt-in codes: ``start`` issues a challenge (a code sent by SMS), ``verify`` checks
the code the recipient typed (pure: time, code, challenge id and the server secret are
arguments; the I/O layer draws them with ``gateway.marketing.tokens``).

Security properties and why:

- **Codes are stored hashed**: ``HMAC-SHA256(secret, challenge_id ":" code)``. A 6-digit
  code has only 10**6 values, so a plain hash in a store dump would be reversed in
  milliseconds; keyed by a server secret that is not in the store (``[optin] secret_env``),
  a dump reveals nothing. The challenge id in the message binds a hash to its challenge.
- **Constant-time compare** (``hmac.compare_digest``) of the HMACs, so response timing does
  not leak how much of a guess was right.
- **Attempts are capped** (5 by default): 5 guesses of 10**6 is a 5e-6 chance per
  challenge; starts are capped per number and per client address per hour (sliding
  window), so guessing can't be scaled by opening many challenges, and the gateway can't
  be used to spam a number with codes.
- **No existence oracle**: ``start`` never looks at whether the number is known,
  subscribed or opted out, and refuses only on rate limits; ``verify`` only knows
  challenges. Every outcome has the same shape (`VerifyResult`), so the API answers
  ``{status, attempts_left}`` whatever the number.
- A per-number limit lets anyone delay codes to a number for up to an hour; that is the
  accepted cost of stopping SMS pumping to it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from hmac import compare_digest
from typing import Final, Literal

import msgspec

from gateway.marketing.templates import TemplateError, render

__all__ = [
    "DEFAULT_CODE_TEMPLATES",
    "Challenge",
    "OptinPolicy",
    "RecentStarts",
    "Refused",
    "Started",
    "VerifyOutcome",
    "VerifyResult",
    "code_message",
    "hash_code",
    "start",
    "verify",
]

#: Localized code SMS (``[optin] templates`` overrides); vars: brand, code, minutes.
DEFAULT_CODE_TEMPLATES: Final[Mapping[str, str]] = {
    "en": "{{ brand }}: your code is {{ code }}. It expires in {{ minutes }} min.",
    "fr": "{{ brand }} : votre code est {{ code }}. Il expire dans {{ minutes }} min.",
    "es": "{{ brand }}: tu código es {{ code }}. Caduca en {{ minutes }} min.",
    "de": "{{ brand }}: Ihr Code lautet {{ code }}. Er läuft in {{ minutes }} Min. ab.",
}

#: Shortest accepted server secret (bytes): 128 bits.
MIN_SECRET: Final = 16


class OptinPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[optin]`` limits (defaults from the issue)."""

    #: A code is valid this long after ``start``.
    code_ttl_s: float = 600.0
    #: Wrong codes allowed per challenge; then ``too_many_attempts``.
    max_attempts: int = 5
    #: Starts per phone number within ``window_s``.
    per_number_per_hour: int = 3
    #: Starts per client address within ``window_s``.
    per_ip_per_hour: int = 20
    #: The sliding window of both start limits.
    window_s: float = 3600.0
    #: Digits per code.
    code_digits: int = 6


class Challenge(msgspec.Struct, frozen=True, array_like=True):
    """A code sent to ``phone`` (persisted; see docs/marketing.md ``optin_challenges``).

    Append fields at the end with defaults only (gateway.store.records conventions).
    """

    id: str
    phone: str
    source: str
    brand: str
    created_at: float
    expires_at: float
    #: HMAC-SHA256(secret, id ":" code), never the code.
    code_hash: bytes
    attempts: int = 0
    verified_at: float | None = None
    #: Language of the code SMS; recorded on the recipient when the code is verified.
    language: str | None = None


class RecentStarts(msgspec.Struct, frozen=True):
    """Times of recent starts, as read by the store for one request (older entries are
    ignored, so the store may over-fetch)."""

    number: Sequence[float] = ()
    ip: Sequence[float] = ()


class Started(msgspec.Struct, frozen=True):
    """``start`` accepted: store ``challenge``, record the start for the number and the
    address, and send the code (``code_message``) as a transactional SMS."""

    challenge: Challenge


class Refused(msgspec.Struct, frozen=True):
    """``start`` refused by a rate limit; ``retry_after`` seconds until a start is allowed.

    ``limit`` is for logs and metrics; the API answers both alike (429, Retry-After).
    """

    reason: Literal["rate_limited"]
    limit: Literal["number", "ip"]
    retry_after: float


VerifyOutcome = Literal["ok", "expired", "wrong_code", "too_many_attempts",
                        "unknown_challenge"]


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``verify`` decided, and the challenge to write back (None = nothing changed).

    ``first`` is True only for the verification that should subscribe the recipient
    (a repeated correct verify, e.g. a client retry, is ``ok`` with ``first=False``).
    """

    outcome: VerifyOutcome
    challenge: Challenge | None = None
    attempts_left: int | None = None
    first: bool = False


def hash_code(secret: bytes, challenge_id: str, code: str) -> bytes:
    """HMAC-SHA256 of the code, keyed by the server secret and bound to the challenge."""
    return hmac.new(secret, f"{challenge_id}:{code}".encode(), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    if len(secret) < MIN_SECRET:
        raise ValueError(f"opt-in secret shorter than {MIN_SECRET} bytes")


def _limited(times: Sequence[float], limit: int, now: float, window: float) -> float | None:
    """Seconds until one more start fits in the window, or None if it fits now."""
    inside = [t for t in times if now - window < t <= now]
    if len(inside) < limit:
        return None
    inside.sort()
    # the window must drop len - limit + 1 entries before there is room
    return inside[len(inside) - limit] + window - now


def start(
    phone: str, *, source: str, ip: str | None, now: float, code: str, challenge_id: str,
    state: RecentStarts, secret: bytes, policy: OptinPolicy = OptinPolicy(),  # noqa: B008
    brand: str = "",
) -> Started | Refused:
    """Open a challenge for ``phone`` unless a start limit is reached.

    Keyword-only: several arguments are strings a positional call could silently swap
    (``code`` and ``challenge_id``).

    ``ip`` None (no client address, e.g. a trusted internal caller) skips the per-address
    limit. The number limit is checked first: it protects the recipient.
    """
    _check_secret(secret)
    wait = _limited(state.number, policy.per_number_per_hour, now, policy.window_s)
    if wait is not None:
        return Refused("rate_limited", "number", wait)
    if ip is not None:
        wait = _limited(state.ip, policy.per_ip_per_hour, now, policy.window_s)
        if wait is not None:
            return Refused("rate_limited", "ip", wait)
    return Started(Challenge(
        id=challenge_id, phone=phone, source=source, brand=brand, created_at=now,
        expires_at=now + policy.code_ttl_s, code_hash=hash_code(secret, challenge_id, code)))


def _normalise(code: str) -> str:
    # people type "123 456" or "123-456"
    return code.replace(" ", "").replace("-", "")


def verify(challenge: Challenge | None, code: str, now: float, secret: bytes,
           policy: OptinPolicy = OptinPolicy()) -> VerifyResult:  # noqa: B008
    """Check ``code`` against ``challenge`` (None = no such challenge id).

    Order: unknown -> too many attempts (no compare once locked) -> expired -> compare.
    A wrong code counts as an attempt and ``attempts_left`` says how many remain.
    """
    _check_secret(secret)
    if challenge is None:
        return VerifyResult(outcome="unknown_challenge")
    left = policy.max_attempts - challenge.attempts
    if left <= 0:
        return VerifyResult(outcome="too_many_attempts", attempts_left=0)
    if now >= challenge.expires_at:
        return VerifyResult(outcome="expired", attempts_left=left)
    typed = _normalise(code)
    # the HMAC is computed and compared even for malformed input: one code path, one timing
    ok = compare_digest(hash_code(secret, challenge.id, typed), challenge.code_hash)
    if ok and len(typed) == policy.code_digits and typed.isascii() and typed.isdigit():
        if challenge.verified_at is not None:
            return VerifyResult(outcome="ok", attempts_left=left)
        updated = msgspec.structs.replace(challenge, verified_at=now)
        return VerifyResult(outcome="ok", challenge=updated, attempts_left=left, first=True)
    updated = msgspec.structs.replace(challenge, attempts=challenge.attempts + 1)
    return VerifyResult(outcome="wrong_code", challenge=updated, attempts_left=left - 1)


def code_message(templates: Mapping[str, str], language: str, *, code: str, brand: str,
                 ttl_s: float) -> str | TemplateError:
    """The code SMS in ``language`` (falling back to ``en``, then any template)."""
    template = templates.get(language) or templates.get("en")
    if template is None:
        template = next(iter(templates.values()), DEFAULT_CODE_TEMPLATES["en"])
    minutes = str(max(1, round(ttl_s / 60)))
    return render(template, {"brand": brand, "code": code, "minutes": minutes})
