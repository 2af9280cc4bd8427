"""The engine: ``evaluate(message, facts, policy, now) -> Decision`` and ``apply_send``.

Rules run in a fixed order (``ORDER``); the first non-None Decision wins. The message kind
selects the rules (``APPLICABILITY``, the matrix in docs/rules.md); inside a rule, policy
switches can still turn it off (e.g. quiet hours for transactional messages). The order
puts rejections that hold whenever the message would go (consent, number, content,
cart, flow limit, error segment) before quiet hours, and the send-time checks (smart
sending, state caps) after it: a deferred message is evaluated again when it wakes, so
those two count the sends that really happened before it.

Check-and-set (flow limit, state caps, smart sending) and atomicity
---------------------------------------------------------------------
``evaluate`` is pure; it never records anything. A SEND carries the bookkeeping in
``Decision.marks`` (marketing send time, flow mark, opt-out confirmation), and
``apply_send(facts, message, decision, now)`` returns the updated facts. The pipeline
makes the check-and-set exact:

1. the accept path holds ONE accept lock (a single accept task) from the facts read to the
   commit, so two concurrent batches are evaluated one after the other, each against the
   facts the previous one committed;
2. inside a batch it evaluates messages in request order, keeping the facts per recipient
   in a dict and replacing them with ``apply_send(...)`` after each SEND, so two messages
   for the same recipient in one batch see each other;
3. it commits the messages and the updated facts (the marks) in the SAME LMDB write
   transaction (group commit), so a crash never keeps one without the other.

Deferred messages are re-evaluated through the same path when they wake.

Performance: no phonenumbers work when ``facts.number`` is filled (the caller caches it per
recipient); quiet-hour schedules and ZoneInfo objects are compiled once per policy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from rules import (
    consent,
    content,
    error_segment,
    flows,
    frequency_caps,
    quiet_hours,
    smart_sending,
)
from rules.model import (
    NO_MARKS,
    Action,
    Decision,
    Marks,
    Message,
    MessageKind,
    Reason,
    RecipientFacts,
    ReplyKind,
)
from rules.numbers import number_facts
from rules.policy import Policy

__all__ = ["APPLICABILITY", "ORDER", "Rule", "apply_send", "evaluate", "rules_for"]

Rule = Callable[[Message, RecipientFacts, Policy, datetime], "Decision | None"]

#: Every rule, in evaluation order: (stable rule id, function).
ORDER: tuple[tuple[str, Rule], ...] = (
    ("consent", consent.check),
    ("undeliverable", error_segment.check_undeliverable),
    ("content", content.check),
    ("abandoned_cart", flows.check_cart),
    ("flow_limit", flows.check_flow_limit),
    ("error_segment", error_segment.check_segment),
    ("quiet_hours", quiet_hours.check),
    ("smart_sending", smart_sending.check),
    ("state_frequency_cap", frequency_caps.check),
)

_C, _F, _T, _R = (MessageKind.CAMPAIGN, MessageKind.FLOW, MessageKind.TRANSACTIONAL,
                  MessageKind.REPLY)

#: Which rules apply to which message kind (docs/rules.md has the same matrix).
#: Cells marked "policy" in the docs are on here and switched inside the rule.
APPLICABILITY: dict[str, frozenset[MessageKind]] = {
    "consent": frozenset({_C, _F, _T, _R}),  # T: opt-outs only unless configured; R: opt-out
    "undeliverable": frozenset({_C, _F, _T}),  # T: only when configured
    "content": frozenset({_C, _F}),
    "abandoned_cart": frozenset({_F}),  # flow_type in cart.flow_types
    "flow_limit": frozenset({_F}),  # flow_type in flows.once_per_trigger
    "error_segment": frozenset({_C}),
    "quiet_hours": frozenset({_C, _F, _T}),  # T: only when configured
    "smart_sending": frozenset({_C, _F}),
    "state_frequency_cap": frozenset({_C, _F}),
}

_PIPELINES: dict[MessageKind, tuple[Rule, ...]] = {
    kind: tuple(fn for rule_id, fn in ORDER if kind in APPLICABILITY[rule_id])
    for kind in MessageKind
}

_MARKETING = frozenset({MessageKind.CAMPAIGN, MessageKind.FLOW})

_INVALID = Decision(action=Action.REJECT, reason=Reason.INVALID_NUMBER,
                    detail="not a valid phone number")

# Enum members as globals: ``EnumClass.MEMBER`` goes through the enum metaclass (~50 ns
# on 3.11), a global ~7 ns; ``evaluate`` runs for every message.
_SEND, _DEFER, _OK = Action.SEND, Action.DEFER, Reason.OK
_OPT_OUT = ReplyKind.OPT_OUT

#: The last marketing SEND built, with what it was built from: ``(now, flow mark, text,
#: decision)``. Memoisation only (the Decision depends on those three values alone, and
#: is immutable): a campaign batch evaluates one text for many recipients at one ``now``.
_LAST_SEND: list[tuple[datetime, str | None, str, Decision] | None] = [None]


def rules_for(kind: MessageKind) -> tuple[str, ...]:
    """The rule ids that run for a message kind, in order."""
    return tuple(rule_id for rule_id, _ in ORDER if kind in APPLICABILITY[rule_id])


def _check_deadline(message: Message, decision: Decision, policy: Policy) -> Decision:
    """A deferral past the cart window or ``send_by`` becomes a rejection."""
    until = decision.defer_until
    if until is None:
        return decision
    end = flows.deadline(message, policy)
    if end is not None and until > end:
        return Decision(action=Action.REJECT, reason=Reason.CART_WINDOW_EXPIRED,
                        detail=f"next window {until.isoformat()} is after the cart window "
                               f"ends {end.isoformat()}")
    if message.send_by is not None and until > message.send_by:
        return Decision(action=Action.REJECT, reason=Reason.SEND_WINDOW_EXPIRED,
                        detail=f"next window {until.isoformat()} is after send_by "
                               f"{message.send_by.isoformat()}")
    return decision


def evaluate(message: Message, facts: RecipientFacts, policy: Policy,
             now: datetime) -> Decision:
    """Decide SEND, DEFER (``defer_until``) or REJECT for one message, with a reason.

    ``now`` must be timezone-aware (other zones are converted to UTC). ``facts`` are the
    recipient's, as loaded by the caller; when ``facts.number`` is None it is computed
    here (25-65 us): cache it instead. Pure: same inputs, same Decision; nothing is recorded (see
    ``apply_send``).
    """
    if now.tzinfo is not UTC:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        now = now.astimezone(UTC)  # defer_until and marks are always UTC
    num = facts.number
    if num is None:
        num = number_facts(message.to_e164)
        facts = msgspec.structs.replace(facts, number=num)
    if not num.valid:
        return _INVALID
    for rule in _PIPELINES[message.kind]:
        decision = rule(message, facts, policy, now)
        if decision is not None:
            if decision.action is _DEFER:
                return _check_deadline(message, decision, policy)
            return decision
    kind = message.kind
    if kind in _MARKETING:
        text = content.final_text(message, facts, policy)
        mark = flows.flow_mark_key(message, policy) if kind is _F else None
        last = _LAST_SEND[0]
        if last is not None and last[0] is now and last[1] == mark and last[2] == text:
            return last[3]
        decision = Decision(action=_SEND, reason=_OK, text=text,
                            marks=Marks(marketing_send_at=now, flow_mark=mark))
        _LAST_SEND[0] = (now, mark, text, decision)
        return decision
    if kind is _R and message.reply_to is _OPT_OUT:
        marks = Marks(opt_out_confirmation=True)
    else:
        marks = NO_MARKS
    return Decision(action=_SEND, reason=_OK, text=message.text, marks=marks)


def apply_send(facts: RecipientFacts, message: Message, decision: Decision,
               now: datetime) -> RecipientFacts:
    """The recipient's facts after ``decision`` went out (unchanged unless it is a SEND).

    Adds the marketing send time (kept ascending), the flow mark and the opt-out
    confirmation flag. ``now`` is the commit time, used when the marks carry no time.
    The caller prunes ``marketing_sends`` older than its longest window when storing.
    """
    if decision.action is not _SEND or decision.marks is NO_MARKS:
        return facts
    marks = decision.marks
    changes: dict[str, object] = {}
    if marks.marketing_send_at is not None:
        at = marks.marketing_send_at
        sends = facts.marketing_sends
        if not sends or sends[-1] <= at:
            changes["marketing_sends"] = (*sends, at)
        else:
            changes["marketing_sends"] = tuple(sorted((*sends, at)))
    if marks.flow_mark is not None and marks.flow_mark not in facts.flow_marks:
        changes["flow_marks"] = facts.flow_marks | {marks.flow_mark}
    if marks.opt_out_confirmation:
        changes["opt_out_confirmed"] = True
    if not changes:
        return facts
    return msgspec.structs.replace(facts, **changes)
