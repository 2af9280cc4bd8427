"""Shared pieces of the reliability tests: the load, the simulator's view, the audit.

The audit is the issue's promise written as counts. Every message the API answered 2xx
(``queued``) must end, per the simulator's submit log (``--log``) and the API, as:

* **at the SMSC exactly once** (one log line the SMSC accepted), whatever its status; or
* a **terminal status** without reaching the SMSC (``failed``: refused by the carrier); or
* ``unknown`` because **the SMSC never answered**: the submit was cut (``dropped``:
  ``unknown_dropped_by_smsc``); or the SMSC accepted it but its answer never reached us
  (connection closed first, answer after the timeout, the process died before reading
  it: ``unknown_accepted_unanswered``); or the SMSC has no trace of it at all
  (``unknown_never_sent``: discarded behind a cut, or marked ``sending`` and never
  written before a crash; the latter is bounded by the dispatcher's in-flight cap).

Violations: ``duplicates`` (accepted twice by the SMSC), ``lost`` (no record, or still
not final at the end). Receipts: every receipt the SMSC sent (one per accepted submit,
DELIVRD) must be recorded, as a matched ``receipt`` or a ``receipt.unmatched`` event.
"""

from __future__ import annotations

import collections
import http.client
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import h11
import trio

from tests.e2e.harness import ApiClient, ApiError, poll
from tests.peers import SimHandle

__all__ = ["Audit", "Load", "audit", "message", "sim_call", "sim_log", "sim_stats",
           "wait_receipts_recorded"]

#: What the simulator logs for a submit it accepted (and will send a receipt for).
SMSC_ACCEPTED = frozenset({"ok", "ok_then_dropped"})


def token(i: int, prefix: str = "m") -> str:
    return f"{prefix}{i:07d}"


def message(i: int, prefix: str = "m", recipients: int = 10_000_000) -> dict[str, Any]:
    """A one-part transactional message whose text is a unique token (found in the
    simulator's log), with an idempotency key (so a client can retry after a crash), to
    one of ``recipients`` numbers."""
    tok = token(i, prefix)
    return {"to": f"+3361{i % recipients:07d}", "text": tok, "kind": "transactional",
            "idempotency_key": tok}


async def sim_call(sim: SimHandle, method: str, path: str,
                   body: dict[str, Any] | None = None) -> Any:
    return await trio.to_thread.run_sync(sim.control, method, path, body)


async def sim_stats(sim: SimHandle) -> dict[str, Any]:
    reply = await sim_call(sim, "GET", "/stats")
    stats: dict[str, Any] = reply["body"]
    return stats


async def sim_log(sim: SimHandle) -> list[dict[str, Any]]:
    return await trio.to_thread.run_sync(sim.submit_log)


async def sim_outstanding(sim: SimHandle) -> int:
    """Receipts/MO the simulator has sent and not had answered, plus those it holds."""
    sessions = (await sim_call(sim, "GET", "/sessions"))["body"]
    stats = await sim_stats(sim)
    return int(stats["pending_deliver"]) + sum(int(s["outstanding_deliver_sm"])
                                               for s in sessions)


@dataclass
class Load:
    """Posts batches of :func:`message` through the API until ``n`` or until the gateway
    dies; keeps the 2xx results (``accepted``: token -> id) and the keys whose request got
    no answer (``unanswered``: the client would retry them)."""

    api: ApiClient
    start: int
    n: int
    batch: int = 50
    prefix: str = "m"
    recipients: int = 10_000_000
    accepted: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    unanswered: list[int] = field(default_factory=list)
    answered_msgs: int = 0
    progress: trio.Event = field(default_factory=trio.Event)
    notify_at: int = 0

    def record(self, idx: list[int], results: list[dict[str, Any]]) -> None:
        for i, r in zip(idx, results, strict=True):
            if r["status"] in ("queued", "scheduled"):
                self.accepted[token(i, self.prefix)] = r["id"]
            else:
                self.rejected[token(i, self.prefix)] = r.get("reason") or r["status"]
        self.answered_msgs += len(idx)
        if self.notify_at and self.answered_msgs >= self.notify_at:
            self.progress.set()

    async def run(self) -> None:
        i = self.start
        end = self.start + self.n
        while i < end:
            idx = list(range(i, min(end, i + self.batch)))
            try:
                results = await self.api.submit([message(j, self.prefix, self.recipients)
                                                  for j in idx])
            except ApiError as e:
                if e.reply.status == 429:
                    await trio.sleep(float(e.reply.headers.get("retry-after", "1")))
                    continue
                raise
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                    ConnectionError, ValueError, h11.ProtocolError):
                # the gateway died under the request: no answer, the client retries later
                self.unanswered += list(range(i, end))
                self.progress.set()
                return
            self.record(idx, results)
            i = idx[-1] + 1

    async def retry_unanswered(self, api: ApiClient) -> int:
        """Send again what got no answer (same idempotency keys); returns how many."""
        todo, self.unanswered = self.unanswered, []
        for k in range(0, len(todo), self.batch):
            idx = todo[k:k + self.batch]
            self.record(idx, await api.submit([message(j, self.prefix, self.recipients)
                                               for j in idx]))
        return len(todo)


@dataclass
class Audit:
    """The counts of the promise (see the module docstring)."""

    accepted: int = 0
    at_smsc_once: int = 0
    delivered: int = 0
    unknown: int = 0
    unknown_dropped_by_smsc: int = 0
    unknown_accepted_unanswered: int = 0
    unknown_never_sent: int = 0
    failed: int = 0
    duplicates: int = 0
    lost: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    smsc_submits: int = 0
    receipts_sent: int = 0
    receipts_recorded: int = 0
    receipts_missing: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def violations(self) -> list[str]:
        out = []
        if self.duplicates:
            out.append(f"{self.duplicates} accepted twice by the SMSC")
        if self.lost:
            out.append(f"{self.lost} lost (no record or not final)")
        if self.receipts_missing:
            out.append(f"{self.receipts_missing} receipts the SMSC sent are not recorded")
        return out

    def note(self, kind: str, what: str) -> None:
        ex = self.examples.setdefault(kind, [])
        if len(ex) < 5:
            ex.append(what)


async def receipt_ids(api: ApiClient) -> set[str]:
    """Carrier message ids of every receipt the gateway recorded (matched or not)."""
    ids: set[str] = set()
    for e in await api.all_events():
        if e["type"] in ("receipt", "receipt.unmatched") and e.get("data"):
            ids.add(str(e["data"].get("carrier_message_id", "")).lower())
    return ids


async def wait_receipts_recorded(api: ApiClient, sim: SimHandle) -> None:
    """Until every receipt for an accepted submit is recorded (bound by the caller)."""
    async def check() -> bool | None:
        wanted = {line["message_id"].lower() for line in await sim_log(sim)
                  if line["result"] in SMSC_ACCEPTED}
        return True if wanted <= await receipt_ids(api) else None
    await poll(check, 0.2)


async def audit(api: ApiClient, sim: SimHandle, accepted: dict[str, str],
                final: Iterable[str] = ("delivered", "undelivered", "expired", "failed",
                                        "rejected", "unknown", "partially_delivered")
                ) -> Audit:
    """Check every accepted message against the submit log and the API."""
    final = frozenset(final)
    log = await sim_log(sim)
    by_text: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for line in log:
        by_text[line.get("text", "")].append(line)
    recorded = await receipt_ids(api)
    a = Audit(accepted=len(accepted), smsc_submits=len(log))
    statuses: collections.Counter[str] = collections.Counter()
    for tok, mid in accepted.items():
        lines = by_text.get(tok, [])
        ok = [x for x in lines if x["result"] in SMSC_ACCEPTED]
        try:
            body = await api.message(mid)
        except ApiError:
            a.lost += 1
            a.note("lost", f"{tok} {mid}: no record")
            continue
        status = body["status"]
        statuses[status] += 1
        if len(ok) > 1:
            a.duplicates += 1
            a.note("duplicates", f"{tok}: {[x['message_id'] for x in ok]}")
        if status not in final:
            a.lost += 1
            a.note("lost", f"{tok} {mid}: still {status}")
            continue
        if len(ok) == 1:
            a.at_smsc_once += 1
        if status == "delivered":
            a.delivered += 1
        elif status == "failed":
            a.failed += 1
        elif status == "unknown":
            a.unknown += 1
            if ok:
                a.unknown_accepted_unanswered += 1
            elif lines:
                a.unknown_dropped_by_smsc += 1
            else:
                a.unknown_never_sent += 1
    a.statuses = dict(statuses)
    sent = {x["message_id"].lower() for x in log if x["result"] in SMSC_ACCEPTED}
    a.receipts_sent = len(sent)
    a.receipts_recorded = len(sent & recorded)
    a.receipts_missing = len(sent - recorded)
    for mid in list(sent - recorded)[:5]:
        a.note("receipts_missing", mid)
    return a


def http_json(port: int, path: str) -> Any:
    """A blocking GET (for scripts; tests use the ApiClient)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()
