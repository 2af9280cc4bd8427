"""The pipeline: accept -> outbox -> carriers; receipts and MO -> store (docs/pipeline.md)."""

from gateway.pipeline.accept import (
    Accepter,
    AcceptStats,
    ReevalOutcome,
    ReplyRequest,
    normalise_number,
)
from gateway.pipeline.dispatch import Dispatcher, DispatcherStats, rollup
from gateway.pipeline.ids import IdGenerator
from gateway.pipeline.inbound import InboundProcessor, InboundStats
from gateway.pipeline.recipients import RecipientCache, facts_from_record, record_with_facts
from gateway.pipeline.routing import NO_ROUTE, Router
from gateway.pipeline.submit_pdus import SubmitBuilder

__all__ = [
    "NO_ROUTE",
    "AcceptStats",
    "Accepter",
    "Dispatcher",
    "DispatcherStats",
    "IdGenerator",
    "InboundProcessor",
    "InboundStats",
    "RecipientCache",
    "ReevalOutcome",
    "ReplyRequest",
    "Router",
    "SubmitBuilder",
    "facts_from_record",
    "normalise_number",
    "record_with_facts",
    "rollup",
]
