"""The randomness the pure modules take as arguments: link tokens, opt-in codes and
challenge ids, all from ``secrets`` (the OS CSPRNG), never ``random``."""

from __future__ import annotations

import secrets

from gateway.marketing.links import TOKEN_ALPHABET, TOKEN_LENGTH

__all__ = ["new_challenge_id", "new_code", "new_token"]


def new_token(length: int = TOKEN_LENGTH) -> str:
    """A link token: ``length`` base62 characters (``shorten``'s ``make_token``)."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))


def new_code(digits: int = 6) -> str:
    """An opt-in code: ``digits`` decimal digits, leading zeros kept."""
    return str(secrets.randbelow(10**digits)).zfill(digits)


def new_challenge_id() -> str:
    """An opt-in challenge id: 128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)
