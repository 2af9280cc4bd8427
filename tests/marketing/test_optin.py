"""gateway.marketing.optin: limits, expiry, attempts, hashed storage, constant-time compare."""

from __future__ import annotations

import hashlib
import hmac

import msgspec
import pytest

from gateway.marketing import optin
from gateway.marketing.optin import (
    DEFAULT_CODE_TEMPLATES,
    Challenge,
    OptinPolicy,
    RecentStarts,
    Refused,
    Started,
    code_message,
    hash_code,
    start,
    verify,
)
from gateway.marketing.store import MemoryMarketingStore
from gateway.marketing.templates import TemplateError
from gateway.marketing.tokens import new_challenge_id, new_code, new_token

SECRET = b"s" * 32
T0 = 1_750_000_000.0
PHONE = "+14155550100"


NO_STARTS = RecentStarts()
DEFAULTS = OptinPolicy()


def started(now: float = T0, code: str = "123456", cid: str = "ch1",
            state: RecentStarts = NO_STARTS, ip: str | None = "203.0.113.9",
            policy: OptinPolicy = DEFAULTS) -> Started | Refused:
    return start(PHONE, source="web_form", ip=ip, now=now, code=code, challenge_id=cid,
                 state=state, secret=SECRET, policy=policy, brand="Acme")


def challenge(**kw: object) -> Challenge:
    result = started(**kw)  # type: ignore[arg-type]
    assert isinstance(result, Started)
    return result.challenge


def test_start_creates_a_challenge_with_a_hashed_code() -> None:
    ch = challenge()
    assert (ch.id, ch.phone, ch.source, ch.brand) == ("ch1", PHONE, "web_form", "Acme")
    assert (ch.created_at, ch.expires_at, ch.attempts, ch.verified_at) == (T0, T0 + 600, 0,
                                                                           None)
    expected = hmac.new(SECRET, b"ch1:123456", hashlib.sha256).digest()
    assert ch.code_hash == expected == hash_code(SECRET, "ch1", "123456")
    # the stored record never contains the code, in any encoding
    blob = msgspec.msgpack.encode(ch)
    assert b"123456" not in blob and b"123456" not in msgspec.json.encode(ch)
    # bound to the challenge id and the secret
    assert hash_code(SECRET, "ch2", "123456") != expected
    assert hash_code(b"t" * 32, "ch1", "123456") != expected


def test_verify_ok_once_then_idempotent() -> None:
    ch = challenge()
    result = verify(ch, "123456", T0 + 60, SECRET)
    assert (result.outcome, result.first, result.attempts_left) == ("ok", True, 5)
    assert result.challenge is not None and result.challenge.verified_at == T0 + 60
    again = verify(result.challenge, "123 456", T0 + 61, SECRET)
    assert (again.outcome, again.first, again.challenge) == ("ok", False, None)


@pytest.mark.parametrize("typed", ["123-456", " 123456 ", "123 456"])
def test_verify_accepts_separators(typed: str) -> None:
    assert verify(challenge(), typed, T0, SECRET).outcome == "ok"


def test_verify_expires_at_ttl() -> None:
    ch = challenge()
    assert verify(ch, "123456", T0 + 599.9, SECRET).outcome == "ok"
    assert verify(ch, "123456", T0 + 600, SECRET).outcome == "expired"
    short = challenge(policy=OptinPolicy(code_ttl_s=30))
    assert verify(short, "123456", T0 + 30, SECRET).outcome == "expired"


def test_five_wrong_attempts_lock_the_challenge() -> None:
    ch = challenge()
    lefts = []
    for _ in range(5):
        result = verify(ch, "000000", T0 + 1, SECRET)
        assert result.outcome == "wrong_code"
        assert result.challenge is not None
        ch = result.challenge
        lefts.append(result.attempts_left)
    assert lefts == [4, 3, 2, 1, 0]
    locked = verify(ch, "123456", T0 + 2, SECRET)  # even the right code
    assert (locked.outcome, locked.attempts_left, locked.challenge) == (
        "too_many_attempts", 0, None)


def test_the_fifth_attempt_may_still_be_right() -> None:
    ch = challenge()
    for _ in range(4):
        result = verify(ch, "999999", T0, SECRET)
        assert result.challenge is not None
        ch = result.challenge
    assert verify(ch, "123456", T0, SECRET).outcome == "ok"


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "12345a", "１２３４５６", "x" * 100])
def test_malformed_codes_are_wrong_and_count(typed: str) -> None:
    result = verify(challenge(), typed, T0, SECRET)
    assert (result.outcome, result.attempts_left) == ("wrong_code", 4)


def test_unknown_challenge() -> None:
    result = verify(None, "123456", T0, SECRET)
    assert (result.outcome, result.challenge, result.attempts_left) == (
        "unknown_challenge", None, None)


def test_results_have_one_shape() -> None:
    ch = challenge()
    keys = {tuple(msgspec.structs.asdict(r)) for r in (
        verify(None, "1", T0, SECRET), verify(ch, "123456", T0, SECRET),
        verify(ch, "1", T0, SECRET), verify(ch, "123456", T0 + 1e6, SECRET))}
    assert len(keys) == 1


def test_verify_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    # A recording wrapper (not a mock of our code): the compare must go through
    # hmac.compare_digest, for right and wrong codes alike.
    calls: list[tuple[bytes, bytes]] = []

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(optin, "compare_digest", recording)
    ch = challenge()
    verify(ch, "123456", T0, SECRET)
    verify(ch, "654321", T0, SECRET)
    verify(ch, "bad", T0, SECRET)
    assert len(calls) == 3
    assert all(b == ch.code_hash for _, b in calls)


def test_per_number_limit_sliding_window() -> None:
    policy = OptinPolicy(per_number_per_hour=3)
    state = RecentStarts(number=(T0 - 3000, T0 - 1000, T0 - 10))
    refused = started(now=T0, state=state, policy=policy)
    assert refused == Refused("rate_limited", "number", 600.0)
    # once the oldest start leaves the hour, a start fits again
    assert isinstance(started(now=T0 + 600, state=state, policy=policy), Started)
    # entries older than the window (or in the future) are ignored
    stale = RecentStarts(number=(T0 - 3600, T0 - 7200, T0 + 5, T0 - 1))
    assert isinstance(started(now=T0, state=stale, policy=policy), Started)


def test_per_ip_limit_and_no_ip() -> None:
    policy = OptinPolicy(per_ip_per_hour=2)
    state = RecentStarts(ip=(T0 - 100, T0 - 50))
    assert started(state=state, policy=policy) == Refused("rate_limited", "ip", 3500.0)
    assert isinstance(started(state=state, policy=policy, ip=None), Started)


def test_number_limit_wins_over_ip_limit() -> None:
    state = RecentStarts(number=(T0,) * 3, ip=(T0,) * 20)
    result = started(state=state)
    assert isinstance(result, Refused) and result.limit == "number"


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify(None, "1", T0, b"short")


def test_code_message_localized_with_fallback() -> None:
    text = code_message(DEFAULT_CODE_TEMPLATES, "fr", code="042817", brand="Acme",
                        ttl_s=600)
    assert text == "Acme : votre code est 042817. Il expire dans 10 min."
    en = code_message(DEFAULT_CODE_TEMPLATES, "xx", code="1", brand="Acme", ttl_s=30)
    assert en == "Acme: your code is 1. It expires in 1 min."
    only = code_message({"de": "{{ code }}"}, "fr", code="7", brand="", ttl_s=60)
    assert only == "7"
    assert isinstance(code_message({"en": "{{ brand }}"}, "en", code="7", brand="", ttl_s=1),
                      TemplateError)


def test_random_values_have_the_documented_shapes() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 150
    assert len(new_code(8)) == 8
    ids = {new_challenge_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 22 for i in ids)
    assert len({new_token() for _ in range(1000)}) == 1000


async def test_flow_through_the_memory_store() -> None:
    store = MemoryMarketingStore()
    ip = "198.51.100.7"
    policy = OptinPolicy(per_number_per_hour=2)
    for i in range(2):
        now = T0 + i
        result = start(PHONE, source="checkout", ip=ip, now=now, code="111111",
                       challenge_id=f"c{i}", state=store.recent_starts(PHONE, ip, now - 3600),
                       secret=SECRET, policy=policy)
        assert isinstance(result, Started)
        await store.commit_start(result.challenge, ip)
    third = start(PHONE, source="checkout", ip=ip, now=T0 + 2, code="111111",
                  challenge_id="c2", state=store.recent_starts(PHONE, ip, T0 + 2 - 3600),
                  secret=SECRET, policy=policy)
    assert isinstance(third, Refused)
    assert store.recent_starts(PHONE, None, 0).ip == ()
    checked = verify(store.get_challenge("c1"), "111111", T0 + 5, SECRET)
    assert checked.outcome == "ok" and checked.challenge is not None
    await store.commit_challenge(checked.challenge)
    stored = store.get_challenge("c1")
    assert stored is not None and stored.verified_at == T0 + 5
