"""Rule 3: smart sending (``smart_sending``).

Skip a marketing message (campaign or flow, each switchable) when the recipient got a
marketing SMS within ``smart_sending.hours`` (default 24 h, Klaviyo's SMS default).
Skipped, not rescheduled. Per-message bypass ``smart_sending``. A send exactly ``hours``
ago no longer counts.

Check-and-set: the send times live in ``RecipientFacts.marketing_sends``; a SEND carries
``marks.marketing_send_at`` and ``rules.engine.apply_send`` adds it, so the next message
for the same recipient in the batch sees it (see ``rules.engine`` on atomicity).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rules.model import Action, Bypass, Decision, Message, MessageKind, Reason, RecipientFacts

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = ["check"]

# Enum members as globals (``EnumClass.MEMBER`` costs ~50 ns on 3.11; runs per message).
_BYPASS = Bypass.SMART_SENDING
_CAMPAIGN = MessageKind.CAMPAIGN


def check(message: Message, facts: RecipientFacts, policy: Policy,
          now: datetime) -> Decision | None:
    """Skip when a marketing SMS went out within the window."""
    sp = policy.smart_sending
    if not sp.enabled or not facts.marketing_sends or _BYPASS in message.bypass:
        return None
    if not (sp.campaigns if message.kind is _CAMPAIGN else sp.flows):
        return None
    last = max(facts.marketing_sends)
    if now - last < timedelta(hours=sp.hours):
        return Decision(action=Action.REJECT, reason=Reason.SMART_SENDING,
                        detail=f"marketing SMS sent at {last.isoformat()}")
    return None
