"""Rule 4: state frequency caps (``state_frequency_cap``).

At most ``max_messages`` (3) promotional SMS per rolling ``window_hours`` (24 h) to numbers
whose area code maps to a listed state (FL Fla. Stat. §501.616(6)(b), OK tit. 15 §775C.4,
MD; Klaviyo caps all three). Campaigns and flows both count and both are capped; extra
sends are skipped, not rescheduled. A send exactly ``window_hours`` ago no longer counts.
Not bypassable.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rules.model import Action, Decision, Message, Reason, RecipientFacts

if TYPE_CHECKING:
    from rules.policy import Policy

__all__ = ["check"]


def check(message: Message, facts: RecipientFacts, policy: Policy,
          now: datetime) -> Decision | None:
    """Skip when the recipient's state cap is reached."""
    fp = policy.frequency_caps
    num = facts.number
    if not fp.enabled or num is None or num.state is None or not facts.marketing_sends:
        return None
    states = fp.states.get(num.region)
    if not states or num.state not in states:
        return None
    cutoff = now - timedelta(hours=fp.window_hours)
    count = 0
    for t in facts.marketing_sends:
        if t > cutoff:
            count += 1
    if count >= fp.max_messages:
        return Decision(action=Action.REJECT, reason=Reason.STATE_FREQUENCY_CAP,
                        detail=f"{count} promotional SMS in {fp.window_hours:g} h "
                               f"({num.region}-{num.state} cap {fp.max_messages})")
    return None
