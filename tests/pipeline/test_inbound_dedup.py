"""InboundProcessor: re-sent MO (SMPP delivery is at-least-once) act once, and receipts
and MO are keyed by ``Inbound.carrier`` (the carrier's name, not the bind's)."""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.testing

from gateway.pipeline.inbound import InboundProcessor
from gateway.smpp import pdu as P
from gateway.store import Store, StoreUnavailableError

from .conftest import LA, put_recipients
from .test_dispatch_harness import KEYWORDS, FakeInbound, deliver, rig

Clock = trio.testing.MockClock
FR1 = "+33612345601"


def mo_events(store: Store, phone: str) -> list[dict[str, object]]:
    return [msgspec.json.decode(e.data) for e in store.events_after(0, 1000)
            if e.type == "mo" and e.phone == phone]


async def test_resent_help_in_a_later_batch_is_acked_and_dropped(
        mem_store: Store, autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [LA])
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        first, again = deliver(LA[1:], b"HELP"), deliver(LA[1:], b"HELP")
        await r.inbound.process([first])  # type: ignore[list-item]
        await trio.sleep(20)  # the SMSC's response timeout: it re-sends
        await r.inbound.process([again])  # type: ignore[list-item]
        assert first.acks == 1 and again.acks == 1
        st = r.inbound.statistics()
        assert st.replies == 1 and st.mo == 1 and st.mo_duplicates == 1
        assert mem_store.outbox_depth() == 1  # one HELP reply
        assert len(mo_events(mem_store, LA)) == 1


async def test_two_copies_in_one_batch_act_once(mem_store: Store,
                                                autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [LA])
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        a, b = deliver(LA[1:], b"HELP"), deliver(LA[1:], b"HELP")
        await r.inbound.process([a, b])  # type: ignore[list-item]
        assert a.acked and b.acked
        assert r.inbound.statistics().replies == 1
        assert mem_store.outbox_depth() == 1


async def test_a_different_text_is_not_a_duplicate(mem_store: Store,
                                                   autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [FR1])
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        await r.inbound.process([deliver(FR1[1:], b"hello")])  # type: ignore[list-item]
        await r.inbound.process([deliver(FR1[1:], b"hello there")])  # type: ignore[list-item]
        await r.inbound.process([deliver(FR1[1:], b"hello", dest="OTHER")])  # type: ignore[list-item]
        assert r.inbound.statistics().mo_duplicates == 0
        assert len(mo_events(mem_store, FR1)) == 3


async def test_same_text_after_the_window_acts_again(mem_store: Store,
                                                     autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [LA])
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        await r.inbound.process([deliver(LA[1:], b"HELP")])  # type: ignore[list-item]
        await trio.sleep(61)
        await r.inbound.process([deliver(LA[1:], b"HELP")])  # type: ignore[list-item]
        st = r.inbound.statistics()
        assert st.mo_duplicates == 0 and st.replies == 2 and st.replies_suppressed == 0
        assert mem_store.outbox_depth() == 2


async def test_resent_help_after_a_restart_gets_no_second_reply(
        mem_store: Store, autojump_clock: Clock) -> None:
    """Crash between the commit and the ack: the new process has no memory of the MO; the
    recipient's keyword history (in the store) still stops a second reply."""
    await put_recipients(mem_store, [LA])
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        await r.inbound.process([deliver(LA[1:], b"HELP")])  # type: ignore[list-item]
        fresh = InboundProcessor(mem_store, r.config, r.recipients, r.accepter, r.dispatcher,
                                 keyword_sets=KEYWORDS, clock=r.clock)
        await trio.sleep(5)
        again = deliver(LA[1:], b"HELP")
        await fresh.process([again])  # type: ignore[list-item]
        assert again.acked
        st = fresh.statistics()
        assert st.replies == 0 and st.replies_suppressed == 1
        assert mem_store.outbox_depth() == 1
        # recorded all the same (the upstream sees both MO; one reply)
        assert len(mo_events(mem_store, LA)) == 2


async def test_opt_in_after_opt_out_is_not_suppressed(mem_store: Store,
                                                      autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [LA])
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        for text in (b"STOP", b"START", b"STOP", b"START"):
            await r.inbound.process([deliver(LA[1:], text)])  # type: ignore[list-item]
            await trio.sleep(1)
        st = r.inbound.statistics()
        assert st.replies_suppressed == 0 and st.mo_duplicates == 0
        stored = mem_store.get_recipient(LA)
        assert stored is not None and stored.consent == "subscribed"


async def test_commit_failure_then_resend_is_processed_not_dropped(
        mem_store: Store, autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [LA])
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        x = deliver(LA[1:], b"HELP")
        mem_store.fail_commits(StoreUnavailableError("gone"))  # type: ignore[attr-defined]
        await r.inbound.process([x])  # type: ignore[list-item]
        assert not x.acked
        mem_store.fail_commits(None)  # type: ignore[attr-defined]
        y = deliver(LA[1:], b"HELP")
        await r.inbound.process([y])  # type: ignore[list-item]
        assert y.acked
        st = r.inbound.statistics()
        assert st.mo_duplicates == 0 and st.replies_suppressed == 0
        assert mem_store.outbox_depth() == 1  # the reply of the failed batch was not stored


async def test_late_copy_of_a_fragment_does_not_start_a_new_mo(
        mem_store: Store, autojump_clock: Clock) -> None:
    await put_recipients(mem_store, [FR1])
    text = "Bonjour, je voudrais de l'aide pour ma commande s'il vous plaît " * 2
    body = text.encode("utf-16-be")
    chunks = [body[i:i + 134] for i in range(0, len(body), 134)]
    assert len(chunks) == 2

    def frag(i: int) -> FakeInbound:
        return deliver(FR1[1:], bytes((5, 0, 3, 0x17, 2, i + 1)) + chunks[i], esm=0x40, dc=8)

    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        await r.inbound.process([frag(1)])  # type: ignore[list-item]
        await r.inbound.process([frag(0)])  # type: ignore[list-item]
        late = frag(1)  # the SMSC re-sends part 2 (its first ack was lost)
        await r.inbound.process([late])  # type: ignore[list-item]
        assert late.acked
        st = r.inbound.statistics()
        assert st.mo_duplicates == 1 and st.mo_fragments_pending == 0
        await trio.sleep(700)  # past the reassembly TTL: nothing incomplete was left
        await r.inbound.process([])
        assert r.inbound.statistics().mo_incomplete == 0
        assert len(mo_events(mem_store, FR1)) == 1


@pytest.mark.parametrize("bind", ["sb#0", "no-hash-here", "other#3"])
async def test_carrier_comes_from_inbound_carrier(mem_store: Store, autojump_clock: Clock,
                                                  bind: str) -> None:
    async with rig(mem_store, run_dispatcher=False, run_inbound=False,
                   carriers=("sb", "b2")) as r:
        inb = deliver(FR1[1:], b"hi there")
        inb.bind = bind
        inb.carrier = "b2"  # type: ignore[attr-defined]
        await r.inbound.process([inb])  # type: ignore[list-item]
        [ev] = mo_events(mem_store, FR1)
        assert ev["carrier"] == "b2"


async def test_real_inbound_carries_the_carrier_name(mem_store: Store,
                                                     autojump_clock: Clock) -> None:
    async with rig(mem_store, run_dispatcher=False, run_inbound=False) as r:
        await r.server.inject_mo(FR1[1:], "ACME", "hello")
        recv = r.inbound._inbound
        assert recv is not None
        with trio.fail_after(10):
            [inb] = await recv.receive()
        assert inb.carrier == "sb" and inb.bind != "sb"
        assert isinstance(inb.pdu, P.DeliverSm)
