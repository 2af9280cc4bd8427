"""Pure compliance rules engine: no I/O, no clock (``now`` is an argument).

``evaluate(message, facts, policy, now) -> Decision`` decides send / defer / reject with a
stable ``Reason``; ``apply_send`` returns the recipient facts after a SEND (the pipeline's
check-and-set, see ``rules.engine``). MO keywords: ``classify`` + ``handle_mo``. Data files
(``config/keywords.toml``, ``config/quiet_hours.toml``) are read by the caller and decoded
with ``load_keyword_sets`` / ``load_quiet_hours``. See docs/rules.md.
"""

from rules.delivery_errors import classify_delivery_error, record_delivered, record_error
from rules.engine import APPLICABILITY, ORDER, apply_send, evaluate, rules_for
from rules.flows import flow_mark_key
from rules.keywords import (
    ConsentChange,
    KeywordKind,
    KeywordMatch,
    KeywordSets,
    MoOutcome,
    apply_mo,
    classify,
    handle_mo,
    load_keyword_sets,
    normalize,
)
from rules.model import (
    Action,
    Bypass,
    ConsentStatus,
    Decision,
    DoubleOptIn,
    ErrorClass,
    ErrorSummary,
    Marks,
    Message,
    MessageKind,
    NumberFacts,
    Reason,
    RecipientFacts,
    ReplyKind,
)
from rules.numbers import number_facts
from rules.policy import Policy, with_quiet_hours
from rules.quiet_hours import QuietHoursTable, load_quiet_hours

__all__ = [
    "APPLICABILITY",
    "ORDER",
    "Action",
    "Bypass",
    "ConsentChange",
    "ConsentStatus",
    "Decision",
    "DoubleOptIn",
    "ErrorClass",
    "ErrorSummary",
    "KeywordKind",
    "KeywordMatch",
    "KeywordSets",
    "Marks",
    "Message",
    "MessageKind",
    "MoOutcome",
    "NumberFacts",
    "Policy",
    "QuietHoursTable",
    "Reason",
    "RecipientFacts",
    "ReplyKind",
    "apply_mo",
    "apply_send",
    "classify",
    "classify_delivery_error",
    "evaluate",
    "flow_mark_key",
    "handle_mo",
    "load_keyword_sets",
    "load_quiet_hours",
    "normalize",
    "number_facts",
    "record_delivered",
    "record_error",
    "rules_for",
    "with_quiet_hours",
]
