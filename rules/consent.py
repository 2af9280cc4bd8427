"""Rule 1: consent (``opted_out``, ``no_consent``).

- Opted-out recipients get nothing but the single opt-out confirmation (a ``reply`` with
  ``reply_to = opt_out``, once: ``RecipientFacts.opt_out_confirmed``), 47 CFR
  64.1200(a)(12). HELP after an opt-out and transactional messages after an opt-out are
  policy switches, off by default.
- Campaigns and flows need an active SMS subscription; transactional messages only when
  ``consent.transactional_requires_consent``; replies answer the recipient's own MO.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rules.model import (
    Action,
    ConsentStatus,
    Decision,
    Message,
    MessageKind,
    Reason,
    RecipientFacts,
    ReplyKind,
)

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = ["check"]

_OPTED_OUT = Decision(action=Action.REJECT, reason=Reason.OPTED_OUT,
                      detail="recipient opted out")
_CONFIRMED_ALREADY = Decision(action=Action.REJECT, reason=Reason.OPTED_OUT,
                              detail="opt-out confirmation already sent")
_NO_CONSENT = Decision(action=Action.REJECT, reason=Reason.NO_CONSENT,
                       detail="no active SMS subscription")


def check(message: Message, facts: RecipientFacts, policy: Policy,
          now: datetime) -> Decision | None:
    """Reject messages the recipient did not consent to."""
    cp = policy.consent
    kind = message.kind
    if facts.consent is ConsentStatus.UNSUBSCRIBED:
        if kind is MessageKind.REPLY:
            if message.reply_to is ReplyKind.OPT_OUT:
                return _CONFIRMED_ALREADY if facts.opt_out_confirmed else None
            if message.reply_to is ReplyKind.HELP and cp.help_after_opt_out:
                return None
            return _OPTED_OUT
        if kind is MessageKind.TRANSACTIONAL and cp.transactional_after_opt_out:
            return None
        return _OPTED_OUT
    if not cp.enabled or kind is MessageKind.REPLY:
        return None
    if kind is MessageKind.TRANSACTIONAL and not cp.transactional_requires_consent:
        return None
    if facts.consent is not ConsentStatus.SUBSCRIBED:
        return _NO_CONSENT
    return None
