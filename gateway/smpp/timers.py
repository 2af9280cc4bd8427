"""Pure session timers, smppex style: stamps in, one action out, no clock.

``Timers`` holds a handful of timestamps the session stamps as PDUs pass (plain
attribute stores: this is on the hot path) and answers two questions:

- ``on_tick(now, oldest)``: which timer, if any, has expired at ``now``? The most urgent
  one is returned; the session acts on it (which re-arms or disarms that timer) and asks
  again until the answer is None, like smppex's ``SMPPTimers.handle_tick``.
- ``next_deadline(oldest_sent_at)``: when must the next tick run, so the trio ticker
  sleeps exactly until then instead of polling.

The timers (Kannel and smppex defaults in domain.md §1.2):

- session init (``bind_timeout``): armed from the connection until the bind completes;
  an SMSC drops a client that never binds, an ESME gives up on a silent SMSC.
- inactivity (``inactivity_timeout``, 0 = off): nothing received from the peer this long.
- response (``response_timeout``): the oldest unanswered request has waited this long.
  Requests are sent in sequence order and all share one timeout, so the oldest inflight
  request is always the first to expire: checking it alone is enough (O(1) per tick).
- enquire_link (``enquire_link_interval``, 0 = off): armed while bound; fires when
  nothing has been *received* from the peer for the interval (SMPP 3.4 §4.11: enquire_link
  checks the link). Counting only what we receive matters: if our own submits counted as
  activity, an SMSC that went silent while we kept submitting would never be probed, every
  submit would just time out one by one as "unknown", and the link would never be
  declared dead (no rebind, no failover). A peer that answers proves the link by itself.
  Its response is an ordinary inflight request, so a missing enquire_link_resp surfaces
  as ``ResponseOverdue`` for that sequence number (the session turns it into LinkDead).

A deadline created later (by a request sent at time ``t``) is never earlier than
``t + response_timeout``; a ticker that sleeps until
``min(next_deadline(), now + response_timeout)`` therefore never oversleeps.
"""

from __future__ import annotations

import enum

import msgspec

__all__ = [
    "EnquireLinkDue",
    "Expired",
    "LinkDeadReason",
    "ResponseOverdue",
    "TimerAction",
    "Timers",
]


class LinkDeadReason(enum.StrEnum):
    """Why a session declared its link dead; stable values, usable as metric labels."""

    #: The bind did not complete within bind_timeout (session init timer).
    BIND_TIMEOUT = "bind_timeout"
    #: Nothing received from the peer within inactivity_timeout.
    INACTIVITY = "inactivity"
    #: Our enquire_link got no enquire_link_resp within response_timeout.
    ENQUIRE_LINK_TIMEOUT = "enquire_link_timeout"
    #: Our bind or unbind got no response within response_timeout.
    RESPONSE_TIMEOUT = "response_timeout"
    #: The peer sent a command_length we refuse; the stream cannot be resynchronised.
    FRAMING_ERROR = "framing_error"


class EnquireLinkDue(msgspec.Struct, frozen=True):
    """The link has been idle for enquire_link_interval: send an enquire_link now."""


class ResponseOverdue(msgspec.Struct, frozen=True):
    """The request ``seq`` has waited response_timeout for its response."""

    seq: int


class Expired(msgspec.Struct, frozen=True):
    """A session timer expired: the link is dead for ``reason``."""

    reason: LinkDeadReason


TimerAction = EnquireLinkDue | ResponseOverdue | Expired
"""What ``Timers.on_tick`` asks the session to do."""

_ENQUIRE_LINK_DUE = EnquireLinkDue()
_BIND_EXPIRED = Expired(LinkDeadReason.BIND_TIMEOUT)
_INACTIVITY_EXPIRED = Expired(LinkDeadReason.INACTIVITY)


class Timers:
    """Deadlines of one session; every time is a float the caller passes in.

    The session stamps ``last_activity`` (any PDU sent or received),
    ``last_received`` (any bytes received), and flips ``binding`` / ``keepalive`` /
    ``enquire_pending`` on state changes. A ``0`` interval disables that timer.
    """

    __slots__ = (
        "bind_timeout",
        "binding",
        "enquire_link_interval",
        "enquire_pending",
        "inactivity_timeout",
        "keepalive",
        "last_activity",
        "last_received",
        "response_timeout",
        "started_at",
    )

    def __init__(
        self,
        *,
        now: float,
        response_timeout: float,
        enquire_link_interval: float = 0.0,
        inactivity_timeout: float = 0.0,
        bind_timeout: float = 0.0,
    ) -> None:
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.inactivity_timeout = inactivity_timeout
        self.bind_timeout = bind_timeout
        self.started_at = now
        self.last_activity = now
        self.last_received = now
        #: Session init timer armed: not bound yet.
        self.binding = True
        #: enquire_link timer armed: bound.
        self.keepalive = False
        #: An enquire_link of ours awaits its response; do not send another.
        self.enquire_pending = False

    def response_deadline(self, sent_at: float) -> float:
        """When a request sent at ``sent_at`` is overdue."""
        return sent_at + self.response_timeout

    def on_tick(self, now: float, oldest: tuple[int, float] | None) -> TimerAction | None:
        """The most urgent expired timer at ``now``, or None.

        ``oldest`` is (seq, sent_at) of the oldest inflight request, if any. Expiries that
        kill the link come first: once the link is dead nothing else matters.
        """
        if self.binding and self.bind_timeout > 0 and now >= self.started_at + self.bind_timeout:
            return _BIND_EXPIRED
        if (
            self.inactivity_timeout > 0
            and now >= self.last_received + self.inactivity_timeout
        ):
            return _INACTIVITY_EXPIRED
        if oldest is not None and now >= oldest[1] + self.response_timeout:
            return ResponseOverdue(oldest[0])
        if (
            self.keepalive
            and self.enquire_link_interval > 0
            and not self.enquire_pending
            and now >= self.last_received + self.enquire_link_interval
        ):
            return _ENQUIRE_LINK_DUE
        return None

    def next_deadline(self, oldest_sent_at: float | None) -> float | None:
        """The earliest time at which ``on_tick`` will return an action, or None."""
        deadline: float | None = None
        if self.binding and self.bind_timeout > 0:
            deadline = self.started_at + self.bind_timeout
        if self.inactivity_timeout > 0:
            d = self.last_received + self.inactivity_timeout
            if deadline is None or d < deadline:
                deadline = d
        if oldest_sent_at is not None:
            d = oldest_sent_at + self.response_timeout
            if deadline is None or d < deadline:
                deadline = d
        if self.keepalive and self.enquire_link_interval > 0 and not self.enquire_pending:
            d = self.last_received + self.enquire_link_interval
            if deadline is None or d < deadline:
                deadline = d
        return deadline
