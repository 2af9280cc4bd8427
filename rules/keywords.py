"""MO keywords: normalization, classification and the consent outcome (domain.md §3.1).

Data: ``config/keywords.toml`` decoded by ``load_keyword_sets`` into ``KeywordSets``:
per-language lists (en, fr, es, de, it, pt, nl, pl, ru), per-country language order and
additions, custom join keywords with a source tag.

Matching, after ``normalize`` (NFKC, case-fold, fold diacritics so ARRÊT = ARRET, drop
punctuation and emoji, collapse spaces):
- tier 1, every kind: the whole reply is a keyword of one of the country's languages; opt-out
  keywords of *every* language also count (``opt_out_all_languages``: revocation "by any
  reasonable means", 47 CFR 64.1200(a)(10));
- tier 2, opt-out only, when the country's mode is ``contains`` (default for US numbers,
  the 2025 FCC rule): an ``opt_out_words`` entry appears as a word or phrase in a reply of
  at most ``contains_max_words`` words ("please stop texting me").
Precedence on a tie: opt-out, then HELP, then opt-in, then confirm.

``handle_mo`` turns a match into the consent change, the reply text (localized templates
from the policy) and the record kept per recipient (for "sent keyword" segments);
``apply_mo`` applies it to the recipient's facts.
"""

from __future__ import annotations

import enum
import unicodedata
from datetime import datetime
from typing import Literal

import msgspec

from rules.model import ConsentStatus, DoubleOptIn, RecipientFacts, ReplyKind
from rules.policy import Policy, ReplyTemplates

__all__ = [
    "ConsentChange",
    "CountryKeywords",
    "CustomKeyword",
    "KeywordKind",
    "KeywordList",
    "KeywordMatch",
    "KeywordRecord",
    "KeywordSets",
    "MoOutcome",
    "apply_mo",
    "classify",
    "handle_mo",
    "load_keyword_sets",
    "normalize",
]


class KeywordKind(enum.StrEnum):
    """What an MO message asks for."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    CONFIRM = "confirm"
    NONE = "none"


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class KeywordList(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Keywords of one language (or one country's additions)."""

    #: Whole-message opt-out keywords.
    opt_out: tuple[str, ...] = ()
    #: Opt-out words/phrases also matched inside short replies (``contains`` mode).
    opt_out_words: tuple[str, ...] = ()
    opt_in: tuple[str, ...] = ()
    help: tuple[str, ...] = ()
    #: Answers to a pending double opt-in (YES, OUI, SI ...).
    confirm: tuple[str, ...] = ()


class CountryKeywords(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A country's language order (first = reply language) and extra keywords."""

    languages: tuple[str, ...] = ()
    add: KeywordList = KeywordList()


class CustomKeyword(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A custom join keyword (``DEALS``) tagged with the source it records."""

    keyword: str
    source: str
    kind: Literal["opt_in"] = "opt_in"
    #: Regions where it applies; empty = everywhere.
    countries: tuple[str, ...] = ()
    #: Reply language (None = the country's first language).
    language: str | None = None


class KeywordSets(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole ``config/keywords.toml``."""

    #: Languages for countries without an entry.
    default_languages: tuple[str, ...] = ("en",)
    #: Opt-out keywords of every language count everywhere.
    opt_out_all_languages: bool = True
    languages: dict[str, KeywordList] = {}
    countries: dict[str, CountryKeywords] = {}
    custom: tuple[CustomKeyword, ...] = ()


class KeywordMatch(msgspec.Struct, frozen=True, kw_only=True):
    """The classification of one MO text."""

    kind: KeywordKind
    #: The configured keyword that matched (as written in the data), or None.
    keyword: str | None = None
    language: str | None = None
    #: Source tag of a custom join keyword.
    source: str | None = None
    #: The normalized text (what was matched against).
    normalized: str = ""


class ConsentChange(enum.StrEnum):
    """The consent change an MO causes."""

    NONE = "none"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    PENDING = "pending"  # double opt-in requested
    CONFIRMED = "confirmed"


class KeywordRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One keyword a recipient sent, kept per recipient for "sent keyword" segments."""

    kind: KeywordKind
    keyword: str
    language: str | None
    source: str | None
    at: datetime


class MoOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What to do about an MO: consent change, the reply (or None), the record."""

    change: ConsentChange = ConsentChange.NONE
    reply: str | None = None
    #: Send the reply as ``Message(kind=reply, reply_to=reply_kind)`` through ``evaluate``.
    reply_kind: ReplyKind | None = None
    record: KeywordRecord | None = None


# --- normalization ------------------------------------------------------------------------

# Joined rather than split on: "S.T.O.P" -> "stop", "opt-out" -> "optout", "don't" -> "dont".
_JOINERS = frozenset("'’`.-_·‐‑")


def normalize(text: str) -> str:
    """NFKC, case-fold, fold diacritics, drop punctuation/emoji, collapse whitespace."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    out: list[str] = []
    for ch in folded:
        cat = unicodedata.category(ch)
        if cat[0] in "LN":
            out.append(ch)
        elif cat in ("Mn", "Cf") or ch in _JOINERS:
            continue  # combining marks (diacritics), zero-width joiners, joiners
        else:
            out.append(" ")  # spaces, other punctuation, symbols and emoji separate words
    return " ".join("".join(out).split())


# --- loading and indexing -----------------------------------------------------------------


def load_keyword_sets(data: bytes | str) -> KeywordSets:
    """Decode and validate ``config/keywords.toml`` (the caller reads the file).

    Raises ``msgspec.ValidationError`` (with the path) or ``ValueError`` (a keyword that
    normalizes to nothing, or a country naming an unknown language).
    """
    sets = msgspec.toml.decode(data, type=KeywordSets)
    for lang, kl in sets.languages.items():
        for field in ("opt_out", "opt_out_words", "opt_in", "help", "confirm"):
            for kw in getattr(kl, field):
                if not normalize(kw):
                    raise ValueError(f"languages.{lang}.{field}: empty keyword {kw!r}")
    for code, ck in sets.countries.items():
        for lang in ck.languages:
            if lang not in sets.languages:
                raise ValueError(f"countries.{code}.languages: unknown language {lang!r}")
    for i, ck2 in enumerate(sets.custom):
        if not normalize(ck2.keyword):
            raise ValueError(f"custom[{i}].keyword: empty keyword {ck2.keyword!r}")
    return sets


_PRECEDENCE = {KeywordKind.OPT_OUT: 0, KeywordKind.HELP: 1, KeywordKind.OPT_IN: 2,
               KeywordKind.CONFIRM: 3}
_Hit = tuple[KeywordKind, str, str | None, str | None]  # kind, keyword, language, source


class _Index:
    __slots__ = ("exact", "primary", "sets", "words")

    def __init__(self, sets: KeywordSets, country: str) -> None:
        self.sets = sets  # keeps the object alive so its id is not reused
        ck = sets.countries.get(country)
        langs = (ck.languages if ck and ck.languages else sets.default_languages)
        self.primary: str | None = langs[0] if langs else None
        self.exact: dict[str, _Hit] = {}
        self.words: list[tuple[tuple[str, ...], str, str | None]] = []

        def add(kind: KeywordKind, kw: str, lang: str | None, source: str | None) -> None:
            key = normalize(kw)
            old = self.exact.get(key)
            if old is None or _PRECEDENCE[kind] < _PRECEDENCE[old[0]]:
                self.exact[key] = (kind, kw, lang, source)

        def add_list(kl: KeywordList, lang: str | None, opt_out_only: bool = False) -> None:
            for kw in (*kl.opt_out, *kl.opt_out_words):
                add(KeywordKind.OPT_OUT, kw, lang, None)
            for kw in kl.opt_out_words:
                self.words.append((tuple(normalize(kw).split()), kw, lang))
            if opt_out_only:
                return
            for kind, kws in ((KeywordKind.HELP, kl.help), (KeywordKind.OPT_IN, kl.opt_in),
                              (KeywordKind.CONFIRM, kl.confirm)):
                for kw in kws:
                    add(kind, kw, lang, None)

        for lang in langs:
            if lang in sets.languages:
                add_list(sets.languages[lang], lang)
        if ck is not None:
            add_list(ck.add, self.primary)
        if sets.opt_out_all_languages:
            for lang, kl in sets.languages.items():
                if lang not in langs:
                    add_list(kl, lang, opt_out_only=True)
        for custom in sets.custom:
            if not custom.countries or country in custom.countries:
                add(KeywordKind.OPT_IN, custom.keyword, custom.language or self.primary,
                    custom.source)
        # longest phrases first, so "opt out" wins over a shorter word in the same reply
        self.words.sort(key=lambda w: -len(w[0]))


_INDEXES: dict[tuple[int, str], _Index] = {}


def _index(sets: KeywordSets, country: str) -> _Index:
    idx = _INDEXES.get((id(sets), country))
    if idx is None or idx.sets is not sets:
        if len(_INDEXES) > 1024:
            _INDEXES.clear()
        idx = _INDEXES[(id(sets), country)] = _Index(sets, country)
    return idx


def _contains(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    if n == 1:
        return phrase[0] in tokens
    return any(tuple(tokens[i:i + n]) == phrase for i in range(len(tokens) - n + 1))


def classify(text: str, country: str, keyword_sets: KeywordSets,
             policy: Policy) -> KeywordMatch:
    """Classify an MO text from a recipient in ``country`` (ISO region, ``""`` if unknown)."""
    norm = normalize(text)
    if not norm:
        return KeywordMatch(kind=KeywordKind.NONE, normalized=norm)
    idx = _index(keyword_sets, country)
    hit = idx.exact.get(norm)
    if hit is not None:
        return KeywordMatch(kind=hit[0], keyword=hit[1], language=hit[2], source=hit[3],
                            normalized=norm)
    kp = policy.keywords
    if kp.opt_out_match.get(country, kp.opt_out_match_default) == "contains":
        tokens = norm.split()
        if len(tokens) <= kp.contains_max_words:
            for phrase, kw, lang in idx.words:
                if _contains(tokens, phrase):
                    return KeywordMatch(kind=KeywordKind.OPT_OUT, keyword=kw, language=lang,
                                        normalized=norm)
    return KeywordMatch(kind=KeywordKind.NONE, normalized=norm)


# --- outcome ------------------------------------------------------------------------------


def _templates(match: KeywordMatch, facts: RecipientFacts, policy: Policy) -> ReplyTemplates:
    replies = policy.keywords.replies
    if match.language and match.language in replies:
        return replies[match.language]
    region = facts.number.region if facts.number is not None else ""
    lang = policy.content.country_language.get(region)
    if lang and lang in replies:
        return replies[lang]
    default = replies.get(policy.keywords.default_language)
    if default is not None:
        return default
    return next(iter(replies.values()))


def _render(template: str, policy: Policy) -> str:
    # str.replace, not str.format: templates come from config and may contain braces.
    kp = policy.keywords
    return template.replace("{brand}", kp.brand).replace("{help_contact}", kp.help_contact)


def handle_mo(match: KeywordMatch, facts: RecipientFacts, policy: Policy,
              now: datetime) -> MoOutcome:
    """The consent change, reply and record for a classified MO (pure).

    - opt-out: UNSUBSCRIBED; one confirmation, none when already opted out and confirmed;
    - opt-in: SUBSCRIBED + confirmation (``opt_in_mode = "double"``: PENDING + a request
      to reply YES);
    - confirm (YES): with a pending double opt-in CONFIRMED + confirmation; without one, an
      opt-in (``confirm_without_pending = "opt_in"``) or nothing;
    - HELP: the help reply; anything else: no change, no reply, no record (an MO event only).
    """
    kind = match.kind
    if kind is KeywordKind.NONE or match.keyword is None:
        return MoOutcome()
    record = KeywordRecord(kind=kind, keyword=match.keyword, language=match.language,
                           source=match.source, at=now)
    kp = policy.keywords
    if kind is KeywordKind.CONFIRM and facts.double_opt_in is not DoubleOptIn.PENDING:
        if kp.confirm_without_pending == "ignore":
            return MoOutcome(record=record)
        kind = KeywordKind.OPT_IN
    tpl = _templates(match, facts, policy)
    if kind is KeywordKind.OPT_OUT:
        if facts.consent is ConsentStatus.UNSUBSCRIBED and facts.opt_out_confirmed:
            return MoOutcome(change=ConsentChange.UNSUBSCRIBED, record=record)
        return MoOutcome(change=ConsentChange.UNSUBSCRIBED, reply=_render(tpl.opt_out, policy),
                         reply_kind=ReplyKind.OPT_OUT, record=record)
    if kind is KeywordKind.HELP:
        return MoOutcome(reply=_render(tpl.help, policy), reply_kind=ReplyKind.HELP,
                         record=record)
    if kind is KeywordKind.CONFIRM:
        return MoOutcome(change=ConsentChange.CONFIRMED, reply=_render(tpl.confirm, policy),
                         reply_kind=ReplyKind.CONFIRM, record=record)
    if kp.opt_in_mode == "double":
        return MoOutcome(change=ConsentChange.PENDING,
                         reply=_render(tpl.confirm_request, policy),
                         reply_kind=ReplyKind.CONFIRM_REQUEST, record=record)
    return MoOutcome(change=ConsentChange.SUBSCRIBED, reply=_render(tpl.opt_in, policy),
                     reply_kind=ReplyKind.OPT_IN, record=record)


def apply_mo(facts: RecipientFacts, outcome: MoOutcome, now: datetime) -> RecipientFacts:
    """The recipient's facts after the MO's consent change (the record is stored apart)."""
    change = outcome.change
    if change is ConsentChange.NONE:
        return facts
    if change is ConsentChange.UNSUBSCRIBED:
        if facts.consent is ConsentStatus.UNSUBSCRIBED:
            return facts
        return msgspec.structs.replace(
            facts, consent=ConsentStatus.UNSUBSCRIBED, consent_at=now,
            double_opt_in=DoubleOptIn.NONE, double_opt_in_at=now, opt_out_confirmed=False)
    if change is ConsentChange.SUBSCRIBED:
        return msgspec.structs.replace(facts, consent=ConsentStatus.SUBSCRIBED, consent_at=now,
                                       opt_out_confirmed=False)
    if change is ConsentChange.PENDING:
        return msgspec.structs.replace(facts, double_opt_in=DoubleOptIn.PENDING,
                                       double_opt_in_at=now)
    return msgspec.structs.replace(
        facts, consent=ConsentStatus.SUBSCRIBED, consent_at=now,
        double_opt_in=DoubleOptIn.CONFIRMED, double_opt_in_at=now, opt_out_confirmed=False)
