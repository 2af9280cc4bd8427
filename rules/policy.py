"""Policy: the ``[rules]`` section of the config, one nested table per rule family.

Every field has a default, so ``Policy()`` is a complete, compliant policy: the TCPA and
state windows, France's Sunday/holiday closure, 24 h smart sending, FL/OK/MD caps, the
48 h cart window, the 30-day error segment, an appended opt-out instruction. Unknown keys
are errors (``forbid_unknown_fields``), so a typo in ``[rules.smart_sending]`` fails at
load with the field path instead of silently disabling a rule.

The quiet-hours table is data (``config/quiet_hours.toml``); ``quiet_hours.table``
defaults to the same built-in table, and the gateway swaps in the loaded file with
``with_quiet_hours``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from rules.quiet_hours import (
    DEFAULT_TABLE,
    QuietHoursTable,
    parse_span,
    validate_table,
    zone_or_error,
)

__all__ = [
    "CartPolicy",
    "ConsentPolicy",
    "ContentPolicy",
    "ErrorSegmentPolicy",
    "FlowPolicy",
    "FrequencyCapPolicy",
    "KeywordPolicy",
    "Policy",
    "QuietHoursPolicy",
    "ReplyTemplates",
    "SmartSendingPolicy",
    "with_quiet_hours",
]

Hours = Annotated[float, msgspec.Meta(gt=0, le=24 * 366)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class _Base(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ConsentPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rule 1: consent (``no_consent``, ``opted_out``)."""

    #: Off = no ``no_consent`` check. Opt-outs are honoured regardless (``opted_out``).
    enabled: bool = True
    #: Transactional messages need marketing consent too (default: no, they are not marketing).
    transactional_requires_consent: bool = False
    #: Opted-out recipients still get transactional messages (default: no; they get nothing
    #: but the single opt-out confirmation).
    transactional_after_opt_out: bool = False
    #: Opted-out recipients still get a HELP answer (CTIA expects HELP to work always).
    help_after_opt_out: bool = False


class QuietHoursPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rule 2: local-time windows (``quiet_hours`` with ``defer_until``)."""

    enabled: bool = True
    campaigns: bool = True
    flows: bool = True
    #: Transactional messages are exempt by default (France: "purely transactional ones need
    #: neither STOP nor the hour limits").
    transactional: bool = False
    #: Zone when neither the number nor the country table gives one.
    fallback_zone: str = "UTC"
    #: Shortened window used with any fallback zone unless the country sets its own.
    fallback_window: str = "10:00-18:00"
    #: How far ahead to look for an opening before answering ``no_send_window``.
    horizon_days: Annotated[int, msgspec.Meta(ge=1, le=60)] = 14
    table: QuietHoursTable = DEFAULT_TABLE

    def __post_init__(self) -> None:
        # Runs on decode too: a bad window or zone fails at config load with its path.
        validate_table(self.table)
        parse_span(self.fallback_window, "fallback_window")
        zone_or_error(self.fallback_zone, "fallback_zone")


class SmartSendingPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rule 3: skip marketing if a marketing SMS went out within ``hours`` (``smart_sending``)."""

    enabled: bool = True
    hours: Hours = 24.0
    campaigns: bool = True
    flows: bool = True


class FrequencyCapPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rule 4: at most ``max_messages`` promotional SMS per rolling window in listed states."""

    enabled: bool = True
    max_messages: Annotated[int, msgspec.Meta(ge=1)] = 3
    window_hours: Hours = 24.0
    #: Region -> states (from the area code) under the cap. Campaigns and flows both count.
    states: dict[str, tuple[str, ...]] = msgspec.field(
        default_factory=lambda: {"US": ("FL", "OK", "MD")})


class FlowPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rule 5b: one SMS per recipient per flow trigger (``flow_limit_reached``)."""

    #: Flow types limited to one message per (flow, trigger); ``"*"`` = every flow.
    once_per_trigger: tuple[str, ...] = ("abandoned_cart",)


class CartPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rule 5: abandoned-cart flows (domain.md §3.4)."""

    enabled: bool = True
    flow_types: tuple[str, ...] = ("abandoned_cart",)
    #: The message must go out within this many hours of ``trigger_at``.
    window_hours: Hours = 48.0
    #: Regions whose recipients need a confirmed double opt-in.
    double_opt_in_regions: tuple[str, ...] = ("US",)


class ErrorSegmentPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rule 6: the SMS error segment (domain.md §4.4)."""

    enabled: bool = True
    #: Campaigns skip recipients with a temporary error in the last ``days`` days.
    days: Annotated[int, msgspec.Meta(ge=1)] = 30
    #: All-time unreachable or disconnected failures keeping a profile in for good (0 = off).
    sticky_count: Count = 2
    #: A DELIVRD after the last failure ends membership early.
    clear_on_delivery: bool = False
    #: Permanently undeliverable numbers get no marketing (``undeliverable_number``).
    suppress_undeliverable: bool = True
    #: ... nor transactional messages.
    suppress_undeliverable_transactional: bool = False


_OPT_OUT_TEXT = {
    "en": "Reply STOP to opt out",
    "fr": "Répondez STOP pour vous désinscrire",
    "es": "Responde STOP para darte de baja",
    "de": "Antworte STOP zum Abmelden",
    "it": "Rispondi STOP per annullare l'iscrizione",
    "pt": "Responda STOP para cancelar",
    "nl": "Antwoord STOP om af te melden",
}

_COUNTRY_LANGUAGE = {
    "US": "en", "CA": "en", "GB": "en", "IE": "en", "AU": "en", "NZ": "en",
    "FR": "fr", "BE": "fr", "LU": "fr", "MC": "fr",
    "ES": "es", "MX": "es", "AR": "es", "CO": "es", "CL": "es", "PE": "es",
    "DE": "de", "AT": "de", "CH": "de", "IT": "it", "PT": "pt", "BR": "pt", "NL": "nl",
}

_SHORTENERS = ("bit.ly", "tinyurl.com", "goo.gl", "ow.ly", "t.co", "is.gd", "buff.ly",
               "rebrand.ly", "cutt.ly", "shorturl.at", "tiny.cc", "rb.gy")


class ContentPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rule 7: message structure for marketing messages (domain.md §3.5)."""

    enabled: bool = True
    #: Reject marketing text whose first token is a link (``starts_with_link``).
    reject_leading_link: bool = True
    #: Hosts of public shorteners AT&T/T-Mobile block (``public_link_shortener``); [] = off.
    blocked_link_domains: tuple[str, ...] = _SHORTENERS
    #: Missing opt-out instruction: append the localized text, reject, or do nothing.
    opt_out_mode: Literal["append", "reject", "off"] = "append"
    #: Language -> appended instruction (joined with a space; counts in the segments).
    opt_out_text: dict[str, str] = msgspec.field(default_factory=lambda: dict(_OPT_OUT_TEXT))
    #: Words whose presence counts as an opt-out instruction (whole words, any case; list
    #: accented spellings too).
    opt_out_markers: tuple[str, ...] = ("STOP", "ARRET", "ARRÊT", "STOPP", "ALTO", "UNSUBSCRIBE",
                                        "OPTOUT")
    default_language: str = "en"
    #: Region -> language of the appended instruction when the message gives none.
    country_language: dict[str, str] = msgspec.field(
        default_factory=lambda: dict(_COUNTRY_LANGUAGE))
    #: Region -> required brand prefix (e.g. ``{FR = "Acme: "}``); ``"*"`` = every region.
    brand_prefix: dict[str, str] = {}
    #: Text without the prefix: prepend it, reject (``missing_brand_prefix``), or ignore.
    brand_prefix_mode: Literal["prepend", "reject", "off"] = "prepend"


class ReplyTemplates(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Localized keyword replies; ``{brand}`` and ``{help_contact}`` are substituted."""

    opt_out: str
    opt_in: str
    help: str
    confirm: str
    confirm_request: str


_REPLIES = {
    "en": ReplyTemplates(
        opt_out="{brand}: You are unsubscribed and will receive no more messages.",
        opt_in="{brand}: You are subscribed to marketing texts. Msg & data rates may apply. "
               "Reply HELP for help, STOP to opt out.",
        help="{brand}: Help at {help_contact}. Msg & data rates may apply. "
             "Reply STOP to opt out.",
        confirm="{brand}: Thanks, your subscription is confirmed. Msg & data rates may "
                "apply. Reply HELP for help, STOP to opt out.",
        confirm_request="{brand}: Reply YES to confirm your subscription to marketing texts "
                        "(incl. cart reminders). Msg & data rates may apply. Reply STOP to "
                        "opt out.",
    ),
    "fr": ReplyTemplates(
        opt_out="{brand} : Vous êtes désinscrit et ne recevrez plus de messages.",
        opt_in="{brand} : Vous êtes inscrit aux SMS marketing. Répondez AIDE pour de l'aide, "
               "STOP pour vous désinscrire.",
        help="{brand} : Aide : {help_contact}. Répondez STOP pour vous désinscrire.",
        confirm="{brand} : Merci, votre inscription est confirmée. Répondez STOP pour vous "
                "désinscrire.",
        confirm_request="{brand} : Répondez OUI pour confirmer votre inscription aux SMS "
                        "marketing. Répondez STOP pour vous désinscrire.",
    ),
    "es": ReplyTemplates(
        opt_out="{brand}: Te has dado de baja y no recibirás más mensajes.",
        opt_in="{brand}: Estás suscrito a mensajes de marketing. Pueden aplicarse tarifas. "
               "Responde AYUDA para ayuda, STOP para darte de baja.",
        help="{brand}: Ayuda en {help_contact}. Responde STOP para darte de baja.",
        confirm="{brand}: Gracias, tu suscripción está confirmada. Responde STOP para darte "
                "de baja.",
        confirm_request="{brand}: Responde SI para confirmar tu suscripción. Responde STOP "
                        "para darte de baja.",
    ),
    "de": ReplyTemplates(
        opt_out="{brand}: Du bist abgemeldet und erhältst keine Nachrichten mehr.",
        opt_in="{brand}: Du bist für Marketing-SMS angemeldet. Antworte HILFE für Hilfe, "
               "STOP zum Abmelden.",
        help="{brand}: Hilfe unter {help_contact}. Antworte STOP zum Abmelden.",
        confirm="{brand}: Danke, deine Anmeldung ist bestätigt. Antworte STOP zum Abmelden.",
        confirm_request="{brand}: Antworte JA, um deine Anmeldung zu bestätigen. Antworte "
                        "STOP zum Abmelden.",
    ),
    "it": ReplyTemplates(
        opt_out="{brand}: Iscrizione annullata, non riceverai altri messaggi.",
        opt_in="{brand}: Sei iscritto agli SMS promozionali. Rispondi AIUTO per aiuto, STOP "
               "per annullare.",
        help="{brand}: Aiuto su {help_contact}. Rispondi STOP per annullare.",
        confirm="{brand}: Grazie, iscrizione confermata. Rispondi STOP per annullare.",
        confirm_request="{brand}: Rispondi SI per confermare l'iscrizione. Rispondi STOP per "
                        "annullare.",
    ),
    "pt": ReplyTemplates(
        opt_out="{brand}: Inscrição cancelada, você não receberá mais mensagens.",
        opt_in="{brand}: Você está inscrito em SMS de marketing. Responda AJUDA para ajuda, "
               "STOP para cancelar.",
        help="{brand}: Ajuda em {help_contact}. Responda STOP para cancelar.",
        confirm="{brand}: Obrigado, inscrição confirmada. Responda STOP para cancelar.",
        confirm_request="{brand}: Responda SIM para confirmar a inscrição. Responda STOP para "
                        "cancelar.",
    ),
    "nl": ReplyTemplates(
        opt_out="{brand}: Je bent afgemeld en ontvangt geen berichten meer.",
        opt_in="{brand}: Je bent aangemeld voor marketing-sms. Antwoord HULP voor hulp, STOP "
               "om af te melden.",
        help="{brand}: Hulp via {help_contact}. Antwoord STOP om af te melden.",
        confirm="{brand}: Bedankt, je aanmelding is bevestigd. Antwoord STOP om af te melden.",
        confirm_request="{brand}: Antwoord JA om je aanmelding te bevestigen. Antwoord STOP "
                        "om af te melden.",
    ),
}

_US_LIKE: dict[str, Literal["exact", "contains"]] = {
    "US": "contains", "PR": "contains", "VI": "contains", "GU": "contains", "AS": "contains",
    "MP": "contains",
}


class KeywordPolicy(_Base, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """MO keywords (``rules.keywords``): matching mode and replies."""

    #: Region -> opt-out matching: ``exact`` (the whole reply is a keyword) or ``contains``
    #: (a keyword appears as a word in a short reply; the 2025 FCC rule, default for US).
    opt_out_match: dict[str, Literal["exact", "contains"]] = msgspec.field(
        default_factory=lambda: dict(_US_LIKE))
    opt_out_match_default: Literal["exact", "contains"] = "exact"
    #: ``contains`` matching only looks at replies of at most this many words.
    contains_max_words: Annotated[int, msgspec.Meta(ge=1)] = 10
    #: ``single``: an MO opt-in subscribes at once; ``double``: it sets a pending double
    #: opt-in and asks for YES (the confirm_request reply).
    opt_in_mode: Literal["single", "double"] = "single"
    #: A YES with no pending double opt-in: treat as an opt-in, or as no keyword.
    confirm_without_pending: Literal["opt_in", "ignore"] = "opt_in"
    #: Program name substituted for ``{brand}`` in replies.
    brand: str = "Our program"
    #: Support contact substituted for ``{help_contact}``.
    help_contact: str = "our website"
    #: Language of replies when the keyword's language has no template.
    default_language: str = "en"
    replies: dict[str, ReplyTemplates] = msgspec.field(default_factory=lambda: dict(_REPLIES))


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Compliance policy decoded from the ``[rules]`` TOML table; every field has a default."""

    consent: ConsentPolicy = ConsentPolicy()
    quiet_hours: QuietHoursPolicy = QuietHoursPolicy()
    smart_sending: SmartSendingPolicy = SmartSendingPolicy()
    frequency_caps: FrequencyCapPolicy = FrequencyCapPolicy()
    flows: FlowPolicy = FlowPolicy()
    cart: CartPolicy = CartPolicy()
    error_segment: ErrorSegmentPolicy = ErrorSegmentPolicy()
    content: ContentPolicy = ContentPolicy()
    keywords: KeywordPolicy = KeywordPolicy()


def with_quiet_hours(policy: Policy, table: QuietHoursTable) -> Policy:
    """The policy with the quiet-hours table loaded from ``config/quiet_hours.toml``."""
    return msgspec.structs.replace(
        policy, quiet_hours=msgspec.structs.replace(policy.quiet_hours, table=table))
