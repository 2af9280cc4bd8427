"""Issue 5 end to end: HTTP API in, SMPP out, against the node-smpp SMSC simulator
(../shared/peers/smsc_sim.js), through the real gateway (``tests/e2e/harness.py``).

Every test is bounded (``trio.fail_after``) and polls; none sleeps for timing. The
quiet-hours test runs in-process with an injected wall clock (real speed, offset to just
before the recipient's window opens); the restart test runs ``smsgw run`` as a
subprocess and SIGKILLs it during dispatch.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio

from tests.e2e.harness import ApiClient, GatewayUnderTest, poll, sim_carrier
from tests.peers import SimHandle, run_sim

pytestmark = [pytest.mark.peers, pytest.mark.slow]

SYS, PW = "gw", "pw"
SIM = ("--system-id", SYS, "--password", PW, "--seed", "5")
#: Quiet hours are real-time dependent: off except in the test about them.
NO_QH: dict[str, Any] = {"quiet_hours": {"enabled": False}}


def gateway(tmp_path: Path, sim: SimHandle, rules: dict[str, Any] | None = None,
            **kw: Any) -> GatewayUnderTest:
    return GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, SYS, PW, **kw.pop(
        "carrier", {}))], rules={**NO_QH, **(rules or {})}, **kw)


async def control(sim: SimHandle, method: str, path: str,
                  body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = await trio.to_thread.run_sync(sim.control, method, path, body)
    return reply


async def submit_log(sim: SimHandle) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await trio.to_thread.run_sync(sim.submit_log)
    return rows


def norm_id(carrier_id: str) -> str:
    return carrier_id.strip().lower().lstrip("0")


async def events_of(api: ApiClient, *types: str) -> list[dict[str, Any]]:
    return [e for e in await api.all_events() if e["type"] in types]


async def test_batch_delivered_with_decimal_receipt_ids(tmp_path: Path) -> None:
    """A batch (single and 3-part messages) goes out; every message reaches
    ``delivered``, though the receipts' text ids are decimal (``--dlr-text-id dec``)."""
    with run_sim(*SIM, "--dlr-delay", "20", "--dlr-text-id", "dec", tmp_path=tmp_path,
                 log=True) as sim:
        gut = gateway(tmp_path, sim)
        with trio.fail_after(25):
            async with gut.in_process() as api:
                msgs = [{"to": f"+336123450{i:02d}", "text": f"Your code is {i:04d}",
                         "kind": "transactional"} for i in range(30)]
                msgs.append({"to": "+33612345099", "kind": "transactional",
                             "text": "Votre commande n°42 est expédiée — merci ! " * 4})
                results = await api.submit(msgs)
                assert [r["status"] for r in results] == ["queued"] * len(msgs)
                assert results[-1]["segments"] == 3
                done = await api.wait_status([r["id"] for r in results], {"delivered"})
                parts = [p for body in done.values() for p in body["parts"]]
                assert len(parts) == 33
                assert all(p["status"] == "delivered" and p["receipt_stat"] == "DELIVRD"
                           for p in parts)
                assert not await events_of(api, "receipt.unmatched")
                log = await submit_log(sim)
                assert {norm_id(r["message_id"]) for r in log} == \
                    {norm_id(p["carrier_message_id"]) for p in parts}
                stats = (await control(sim, "GET", "/stats"))["body"]
                assert stats["dlrs_sent"] == 33


async def test_failed_receipts_error_segment_campaigns_skip_flows_dont(
        tmp_path: Path) -> None:
    """UNDELIV / EXPIRED receipts put the recipients in the error segment; a campaign
    then skips them (``error_segment``), a flow still goes out."""
    phones = [f"+336123460{i:02d}" for i in range(6)]
    with run_sim(*SIM, "--dlr-delay", "20", "--dlr-stats", "UNDELIV=1:001,EXPIRED=1",
                 tmp_path=tmp_path) as sim:
        gut = gateway(tmp_path, sim, {"smart_sending": {"enabled": False}})
        with trio.fail_after(25):
            async with gut.in_process() as api:
                for p in phones:
                    await api.consent(p, "subscribe")
                results = await api.submit([{"to": p, "text": "Your parcel is on its way",
                                             "kind": "transactional"} for p in phones])
                done = await api.wait_status([r["id"] for r in results],
                                             {"undelivered", "expired"})
                assert {b["parts"][0]["receipt_stat"] for b in done.values()} <= \
                    {"UNDELIV", "EXPIRED"}

                async def segment() -> set[str] | None:
                    got = {row["phone"] for row in await api.error_segment()}
                    return got if set(phones) <= got else None

                await poll(segment)
                campaign = await api.submit([{"to": p, "text": "Sale: 20% off today",
                                              "kind": "campaign", "campaign_id": "c1"}
                                             for p in phones])
                assert {(r["status"], r["reason"]) for r in campaign} == \
                    {("rejected", "error_segment")}
                flow = await api.submit([{"to": p, "text": "Welcome to the club",
                                          "kind": "flow", "flow_id": "welcome",
                                          "flow_type": "welcome", "trigger_id": f"t{i}"}
                                         for i, p in enumerate(phones)])
                assert [r["status"] for r in flow] == ["queued"] * len(phones)
                await api.wait_status([r["id"] for r in flow], {"undelivered", "expired"})


@pytest.mark.parametrize(("text", "phone"), [("STOP", "+14155550100"),
                                             ("Arrêt", "+33612345678"),
                                             ("stop please", "+14155550101")])
async def test_mo_stop_opts_out_then_only_the_confirmation_goes_out(
        tmp_path: Path, text: str, phone: str) -> None:
    with run_sim(*SIM, "--dlr-delay", "20", tmp_path=tmp_path, log=True) as sim:
        gut = gateway(tmp_path, sim)
        with trio.fail_after(20):
            async with gut.in_process() as api:
                await api.consent(phone, "subscribe")
                sent = await control(sim, "POST", "/mo", {
                    "source_addr": phone[1:], "destination_addr": "SMSGW", "text": text})
                assert sent["status"] == 200 and sent["body"]["parts"][0]["status"] == 0

                async def opted_out() -> dict[str, Any] | None:
                    mo = [e for e in await events_of(api, "mo") if e["phone"] == phone]
                    rec = await api.recipient(phone)
                    return mo[0] if mo and rec["consent"]["state"] == "unsubscribed" else None

                mo = await poll(opted_out)
                reply_id = mo["data"]["reply_message_id"]
                assert mo["data"]["keyword_kind"] == "opt_out" and reply_id
                [reply] = (await api.wait_status([reply_id], {"delivered"})).values()
                later = await api.submit_one({"to": phone, "text": "Sale: 20% off",
                                              "kind": "campaign"})
                assert (later["status"], later["reason"]) == ("rejected", "opted_out")
                to_phone = [r for r in await submit_log(sim)
                            if r["destination_addr"].lstrip("+") == phone[1:]]
                assert [norm_id(r["message_id"]) for r in to_phone] == \
                    [norm_id(reply["parts"][0]["carrier_message_id"])]
                assert "Sale" not in to_phone[0]["text"]


async def test_three_part_ucs2_mo_reassembled_out_of_order(tmp_path: Path) -> None:
    """Three UCS-2 parts with our own 8-bit concatenation UDH, sent last part first: one
    MO event with the whole text, every fragment acked after the commit."""
    phone = "+33612345601"
    text = ("Bonjour ! Пожалуйста, остановите рассылку. Merci beaucoup, à bientôt. "
            "こんにちは、よろしくお願いします。" * 2)
    body = text.encode("utf-16-be")
    chunks = [body[i:i + 134] for i in range(0, len(body), 134)]
    assert len(chunks) == 3
    with run_sim(*SIM, tmp_path=tmp_path) as sim:
        gut = gateway(tmp_path, sim)
        with trio.fail_after(20):
            async with gut.in_process() as api:
                answers = []
                for i in reversed(range(3)):
                    udh = bytes((5, 0, 3, 0xA7, 3, i + 1))
                    # Fragments stay unacked until the whole MO is committed: don't wait
                    # for the first two (the answer is then a 504).
                    answers.append(await control(sim, "POST", "/mo", {
                        "source_addr": phone[1:], "destination_addr": "SMSGW",
                        "short_message_hex": (udh + chunks[i]).hex(), "data_coding": 8,
                        "esm_class": 64, "split": "none",
                        "timeout_ms": 5000 if i == 0 else 200}))
                assert answers[-1]["status"] == 200, answers

                async def acked() -> int | None:
                    stats = (await control(sim, "GET", "/stats"))["body"]
                    return stats["mo_acked"] if stats["mo_acked"] == 3 else None

                await poll(acked)
                mo = [e for e in await events_of(api, "mo") if e["phone"] == phone]
                assert len(mo) == 1, mo
                assert mo[0]["data"]["text"] == text


async def test_quiet_hours_defer_then_send_when_the_window_opens(tmp_path: Path) -> None:
    """In-process, with the pipeline's wall clock moved (real speed) to a Monday at
    07:59:55.5 in Paris: a campaign to a French number is ``scheduled`` (quiet hours,
    config/quiet_hours.toml: FR 08:00-20:00 Mon-Sat) and reaches the SMSC only once the
    window has opened, ~4.5 s later."""
    phone = "+33612345602"
    paris = ZoneInfo("Europe/Paris")
    opens = datetime(2026, 3, 2, 8, 0, tzinfo=paris).timestamp()  # a Monday, no holiday
    offset = (opens - 4.5) - time.time()

    def clock() -> float:
        return time.time() + offset

    with run_sim(*SIM, "--dlr-delay", "20", tmp_path=tmp_path, log=True) as sim:
        gut = GatewayUnderTest(tmp_path, carriers=[sim_carrier(sim, SYS, PW)])
        with trio.fail_after(20):
            async with gut.in_process(clock=clock) as api:
                await api.consent(phone, "subscribe")
                res = await api.submit_one({"to": phone, "text": "Spring sale starts now",
                                            "kind": "campaign", "campaign_id": "spring"})
                assert clock() < opens, "the gateway took too long to start"
                assert (res["status"], res["reason"]) == ("scheduled", "quiet_hours")
                assert datetime.fromisoformat(res["defer_until"]).timestamp() == opens
                assert not await submit_log(sim)
                [body] = (await api.wait_status([res["id"]], {"delivered"})).values()
                [row] = await submit_log(sim)
                sent_at = row["ts"] / 1000 + offset  # the SMSC's clock, moved like ours
                assert opens <= sent_at < opens + 3
                assert "scheduled" in [h["status"] for h in body["history"]]


async def test_sigkill_during_dispatch_then_restart_loses_nothing(tmp_path: Path) -> None:
    """``smsgw run`` as a subprocess: accept N, SIGKILL while submits are in flight,
    restart on the same store. Every accepted message is found and reaches ``delivered``,
    or ``unknown`` for parts handed to the SMSC whose answer never came (at most the bind
    window); nothing is submitted twice; every receipt the SMSC sent (it re-sends the
    unacknowledged ones) is recorded, matched or as ``receipt.unmatched``."""
    n, window = 120, 8
    with run_sim(*SIM, "--dlr-delay", "50", "--resp-delay", "100", tmp_path=tmp_path,
                 log=True) as sim:
        gut = gateway(tmp_path, sim, durability="fsync", carrier={"window": window})
        with trio.fail_after(45):
            api = await gut.start_subprocess()
            try:
                await api.wait_ready()
                results = await api.submit([{"to": f"+336123470{i:02d}" if i < 100
                                             else f"+3361234710{i - 100:01d}"
                                             if i < 110 else f"+336123472{i - 110:02d}",
                                             "text": f"Order {i} shipped",
                                             "kind": "transactional"} for i in range(n)])
                ids = [r["id"] for r in results]
                assert len(set(ids)) == n and all(r["status"] == "queued" for r in results)

                async def mid_dispatch() -> int | None:
                    submits = int((await control(sim, "GET", "/stats"))["body"]["submits"])
                    return submits if submits >= 30 else None

                at_kill = await poll(mid_dispatch, 0.01)
                assert at_kill < n, "dispatch finished before the kill: nothing tested"
                assert await gut.kill(signal.SIGKILL) == -signal.SIGKILL

                api = await gut.start_subprocess()
                await api.wait_ready()
                done = await api.wait_status(ids, {"delivered", "unknown"}, interval=0.1)
                assert set(done) == set(ids)
                unknown = [b for b in done.values() if b["status"] == "unknown"]
                # unknown = no answer came: no carrier id was ever recorded for the part
                assert all(p["status"] == "unknown" and not p.get("carrier_message_id")
                           for b in unknown for p in b["parts"])

                log = await submit_log(sim)
                per_dest = Counter(r["destination_addr"] for r in log)
                assert max(per_dest.values()) == 1, "a message was submitted twice"
                delivered = {b["to"][1:] for b in done.values() if b["status"] == "delivered"}
                assert delivered <= set(per_dest)
                # Parts committed 'sending' but still queued for the bind at the kill never
                # reached the SMSC; they are 'unknown' too (pipeline.unknown_outcome =
                # "unknown": never a blind resend). The dispatcher's in-flight cap bounds the
                # parts on the wire or queued for the bind (a window + half a window of
                # headroom, INFLIGHT_HEADROOM); a part answered by the SMSC whose outcome
                # commit had not landed at the kill is 'unknown' as well and no longer counts
                # against the cap (it was answered), so allow a second half window for those:
                # 1 run in 15 on a loaded machine had 16 unknown with window 8.
                never_sent = [b for b in unknown if b["to"][1:] not in per_dest]
                print(f"killed after {at_kill} submits: {len(unknown)} unknown, "
                      f"{len(never_sent)} of them never reached the SMSC")
                assert len(unknown) <= 2 * window
                accepted = {norm_id(r["message_id"]) for r in log if r["status"] == 0}
                answered = {norm_id(p["carrier_message_id"]) for b in done.values()
                            for p in b["parts"] if p.get("carrier_message_id")}
                assert answered <= accepted

                async def receipts_recorded() -> set[str] | None:
                    seen = {norm_id(e["data"]["carrier_message_id"])
                            for e in await events_of(api, "receipt", "receipt.unmatched")}
                    return seen if accepted <= seen else None

                await poll(receipts_recorded, 0.1)
                assert await gut.terminate() == 0
            finally:
                if gut.proc is not None and gut.proc.poll() is None:
                    gut.proc.kill()
                    with trio.move_on_after(5):
                        await gut.proc.wait()
