"""MO keywords: normalization, classification, outcomes, data file."""

from __future__ import annotations

import msgspec
import pytest

from rules import (
    ConsentChange,
    ConsentStatus,
    DoubleOptIn,
    KeywordKind,
    KeywordMatch,
    Message,
    MessageKind,
    Policy,
    Reason,
    ReplyKind,
    apply_mo,
    apply_send,
    classify,
    evaluate,
    handle_mo,
    load_keyword_sets,
    normalize,
)
from rules.keywords import KeywordSets
from tests.rules.helpers import FR, NY, facts, keyword_sets, utc

P = Policy()
NOW = utc(2026, 3, 8, 23, 0)  # Sunday night in Paris and New York: replies still go
OUT, IN, HELP, CONFIRM, NONE = (KeywordKind.OPT_OUT, KeywordKind.OPT_IN, KeywordKind.HELP,
                                KeywordKind.CONFIRM, KeywordKind.NONE)


@pytest.mark.parametrize(("raw", "norm"), [
    ("  STOP  ", "stop"),
    ("Stop!!!", "stop"),
    ("ARRÊT", "arret"),
    ("Arrête", "arrete"),
    ("ＳＴＯＰ", "stop"),  # fullwidth (NFKC)
    ("🛑 stop 🛑", "stop"),
    ("S.T.O.P", "stop"),
    ("opt-out", "optout"),
    ("no   más,\tgracias", "no mas gracias"),
    ("STRASSE", "strasse"),
    ("Straße", "strasse"),
    ("sto\u200bp", "stop"),  # zero-width space
    ("", ""),
    ("!!! 😀", ""),
])
def test_normalize(raw: str, norm: str) -> None:
    assert normalize(raw) == norm


# (text, country, kind, keyword, language)
CASES = [
    ("STOP", "US", OUT, "STOP", "en"),
    ("stop", "FR", OUT, "STOP", "fr"),
    ("Arrêt", "FR", OUT, "ARRET", "fr"),
    ("ARRET", "US", OUT, "ARRET", "fr"),  # opt-outs count in every language
    ("No más", "US", OUT, "NO MAS", "es"),
    ("ALTO", "MX", OUT, "ALTO", "es"),
    ("STOPP", "DE", OUT, "STOPP", "de"),
    ("Ferma", "IT", OUT, "FERMA", "it"),
    ("PARAR", "BR", OUT, "PARAR", "pt"),
    ("afmelden", "NL", OUT, "AFMELDEN", "nl"),
    ("opt out", "GB", OUT, "OPT OUT", "en"),
    ("UNSUB", "NO", OUT, "UNSUB", "en"),
    ("HELP", "US", HELP, "HELP", "en"),
    ("aide", "FR", HELP, "AIDE", "fr"),
    ("INFO", "FR", HELP, "INFO", "fr"),
    ("AYUDA", "US", HELP, "AYUDA", "es"),
    ("hilfe", "DE", HELP, "HILFE", "de"),
    ("aide", "US", NONE, None, None),  # help is per country languages only
    ("START", "US", IN, "START", "en"),
    ("unstop", "US", IN, "UNSTOP", "en"),
    ("NONARRET", "FR", IN, "NONARRET", "fr"),
    ("yes", "US", CONFIRM, "YES", "en"),
    ("Oui", "FR", CONFIRM, "OUI", "fr"),
    ("Sí", "ES", CONFIRM, "SI", "es"),
    ("hello", "US", NONE, None, None),
    ("", "US", NONE, None, None),
]


@pytest.mark.parametrize(("text", "country", "kind", "keyword", "language"), CASES)
def test_classify_whole_message(text: str, country: str, kind: KeywordKind,
                                keyword: str | None, language: str | None) -> None:
    m = classify(text, country, keyword_sets(), P)
    assert (m.kind, m.keyword, m.language) == (kind, keyword, language)


@pytest.mark.parametrize(("text", "country", "kind"), [
    ("Please stop texting me", "US", OUT),
    ("stop it now thanks", "US", OUT),
    ("I want to opt out please", "US", OUT),
    ("remove me from this list", "US", OUT),
    ("no mas por favor", "US", OUT),
    ("Please stop texting me", "PR", OUT),
    ("Please stop texting me", "GB", NONE),  # exact mode outside the US by default
    ("Please stop texting me", "FR", NONE),
    ("don't stop the sale news coming, I love it and want more every day", "US", NONE),
    ("what time does the store open", "US", NONE),
    ("help me stop", "US", OUT),  # opt-out wins over help inside a reply
    ("nonstop deals", "US", NONE),  # a word, not a substring
])
def test_classify_contains_mode(text: str, country: str, kind: KeywordKind) -> None:
    assert classify(text, country, keyword_sets(), P).kind is kind


def test_contains_mode_per_country_policy() -> None:
    policy = msgspec.convert({"keywords": {"opt_out_match": {"GB": "contains"},
                                           "contains_max_words": 3}}, Policy)
    ks = keyword_sets()
    assert classify("please stop now", "GB", ks, policy).kind is OUT
    assert classify("please stop it now", "GB", ks, policy).kind is NONE  # 4 words
    assert classify("please stop now", "US", ks, policy).kind is NONE  # US now exact


def test_custom_join_keyword_source() -> None:
    m = classify("join", "US", keyword_sets(), P)
    assert (m.kind, m.source) == (IN, "keyword-join")
    sets = load_keyword_sets(b'[languages.en]\nopt_out = ["STOP"]\n'
                             b'[[custom]]\nkeyword = "DEALS"\nsource = "poster"\n'
                             b'countries = ["US"]\n')
    assert classify("deals", "US", sets, P).source == "poster"
    assert classify("deals", "CA", sets, P).kind is NONE


@pytest.mark.parametrize(("toml", "where"), [
    (b'[languages.en]\nopt_out = ["!!!"]\n', "languages.en.opt_out"),
    (b'[countries.US]\nlanguages = ["xx"]\n', "countries.US.languages"),
    (b'[[custom]]\nkeyword = "?"\nsource = "s"\n', r"custom\[0\]"),
])
def test_load_errors(toml: bytes, where: str) -> None:
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        load_keyword_sets(toml)


def test_load_unknown_key() -> None:
    with pytest.raises(msgspec.ValidationError, match="languages"):
        load_keyword_sets(b'[languages.en]\nopt_outs = ["STOP"]\n')


def test_data_file_has_required_languages() -> None:
    ks = keyword_sets()
    assert {"en", "fr", "es", "de", "it", "pt", "nl"} <= set(ks.languages)
    assert isinstance(ks, KeywordSets)
    for lang in ("en", "fr", "es", "de", "it", "pt", "nl"):
        kl = ks.languages[lang]
        assert kl.opt_out and kl.help and kl.confirm, lang


def mo(text: str, country: str = "US") -> KeywordMatch:
    return classify(text, country, keyword_sets(), P)


@pytest.mark.parametrize(("text", "consent", "doi", "confirmed", "change", "reply_kind"), [
    ("STOP", ConsentStatus.SUBSCRIBED, DoubleOptIn.NONE, False, ConsentChange.UNSUBSCRIBED,
     ReplyKind.OPT_OUT),
    ("STOP", ConsentStatus.UNSUBSCRIBED, DoubleOptIn.NONE, True, ConsentChange.UNSUBSCRIBED,
     None),  # at most one confirmation
    ("STOP", ConsentStatus.UNSUBSCRIBED, DoubleOptIn.NONE, False,
     ConsentChange.UNSUBSCRIBED, ReplyKind.OPT_OUT),  # opted out elsewhere, never confirmed
    ("START", ConsentStatus.UNSUBSCRIBED, DoubleOptIn.NONE, True, ConsentChange.SUBSCRIBED,
     ReplyKind.OPT_IN),
    ("YES", ConsentStatus.NONE, DoubleOptIn.PENDING, False, ConsentChange.CONFIRMED,
     ReplyKind.CONFIRM),
    ("YES", ConsentStatus.NONE, DoubleOptIn.NONE, False, ConsentChange.SUBSCRIBED,
     ReplyKind.OPT_IN),
    ("HELP", ConsentStatus.SUBSCRIBED, DoubleOptIn.NONE, False, ConsentChange.NONE,
     ReplyKind.HELP),
    ("what?", ConsentStatus.SUBSCRIBED, DoubleOptIn.NONE, False, ConsentChange.NONE, None),
])
def test_handle_mo(text: str, consent: ConsentStatus, doi: DoubleOptIn, confirmed: bool,
                   change: ConsentChange, reply_kind: ReplyKind | None) -> None:
    f = facts(NY, consent=consent, double_opt_in=doi, opt_out_confirmed=confirmed)
    out = handle_mo(mo(text), f, P, NOW)
    assert out.change is change
    assert out.reply_kind is reply_kind
    assert (out.reply is None) is (reply_kind is None)
    if text == "what?":
        assert out.record is None
    else:
        assert out.record is not None
        assert out.record.at == NOW


def test_double_opt_in_mode_and_ignore() -> None:
    policy = msgspec.convert({"keywords": {"opt_in_mode": "double",
                                           "confirm_without_pending": "ignore"}}, Policy)
    f = facts(NY, consent=ConsentStatus.NONE)
    out = handle_mo(mo("START"), f, policy, NOW)
    assert (out.change, out.reply_kind) == (ConsentChange.PENDING, ReplyKind.CONFIRM_REQUEST)
    f = apply_mo(f, out, NOW)
    assert f.double_opt_in is DoubleOptIn.PENDING
    assert f.consent is ConsentStatus.NONE
    out = handle_mo(mo("Y"), f, policy, NOW)
    f = apply_mo(f, out, NOW)
    assert (f.consent, f.double_opt_in) == (ConsentStatus.SUBSCRIBED, DoubleOptIn.CONFIRMED)
    ignored = handle_mo(mo("YES"), f, policy, NOW)
    assert ignored.change is ConsentChange.NONE
    assert ignored.reply is None
    assert ignored.record is not None


def test_replies_localized_and_rendered() -> None:
    policy = msgspec.convert({"keywords": {"brand": "Acme", "help_contact": "acme.fr/aide"}},
                             Policy)
    f = facts(FR)
    assert handle_mo(mo("AIDE", "FR"), f, policy, NOW).reply == \
        "Acme : Aide : acme.fr/aide. Répondez STOP pour vous désinscrire."
    # STOP from a French number: the French template (the country's first language)
    assert handle_mo(mo("STOP", "FR"), f, policy, NOW).reply == \
        "Acme : Vous êtes désinscrit et ne recevrez plus de messages."
    # a language without templates falls back to the country, then the default
    pl = handle_mo(mo("ZATRZYMAJ", "PL"), facts(NY), policy, NOW)
    assert pl.reply is not None
    assert pl.reply.startswith("Acme: You are unsubscribed")


def test_stop_flow_end_to_end() -> None:
    """STOP -> revoked + one confirmation through evaluate; a second STOP: no reply;
    marketing rejected; START -> subscribed again."""
    f = facts(NY)
    out = handle_mo(mo("Stop please"), f, P, NOW)
    f = apply_mo(f, out, NOW)
    assert f.consent is ConsentStatus.UNSUBSCRIBED
    assert out.reply is not None
    reply = Message(kind=MessageKind.REPLY, to_e164=NY, text=out.reply,
                    reply_to=out.reply_kind)
    d = evaluate(reply, f, P, NOW)
    assert d.action.value == "send"
    assert d.text == out.reply  # replies are sent verbatim
    f = apply_send(f, reply, d, NOW)
    again = handle_mo(mo("STOP"), f, P, NOW)
    assert again.reply is None
    assert apply_mo(f, again, NOW) is f
    assert evaluate(reply, f, P, NOW).reason is Reason.OPTED_OUT
    campaign = Message(kind=MessageKind.CAMPAIGN, to_e164=NY, text="Sale")
    assert evaluate(campaign, f, P, NOW).reason is Reason.OPTED_OUT
    back = handle_mo(mo("START"), f, P, NOW)
    f = apply_mo(f, back, NOW)
    assert (f.consent, f.opt_out_confirmed) == (ConsentStatus.SUBSCRIBED, False)
