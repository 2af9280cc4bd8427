"""InboundProcessor: receipts whose carrier id the dispatcher has answered but not committed.

With ``wait_on_first_key`` (the default) a receipt whose first key misses in the store while
the dispatcher holds that key uncommitted waits for the commit without its other keys
being computed or read; the general path (``wait_on_first_key = False``) reads every key
first, then waits because of the same pending key, then looks everything up again. The
differential test runs both over generated cases (stored, pending, never-committed and
record-less carrier ids; exact, lower-case, zero-padded and decimal receipt ids;
intermediate and final stats, repeats, unknown ids; several small batches) and compares
everything they leave: the store's databases (records, events, errors, recipients),
the acks in order, the statistics, what stays held, and the dispatcher's waits; the fast
path must also read fewer carrier ids.

The generated carrier ids all start with a letter, so no reading of one id (decimal <->
hex) is another stored or pending id: with such a collision the general path would match
a receipt whose own id is pending to the other submit, the fast path to its own one after
the commit (``test_pending_first_key_wins_over_another_reading``); and no id is given
to two submits (``test_reused_carrier_id_goes_to_the_new_submit``: the same).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from gateway.config import GatewayConfig
from gateway.pipeline.inbound import InboundProcessor
from gateway.pipeline.recipients import RecipientCache
from gateway.store import (
    HistoryEntry,
    MessageRecord,
    PartRecord,
    Store,
    WriteBatch,
    open_memory_store,
)
from gateway.store.kv import Db, KvTxn

from .conftest import NOW, put_recipients
from .test_dispatch_harness import FakeInbound
from .test_inbound import receipt_pdu

Clock = trio.testing.MockClock
STATS = ["DELIVRD", "DELIVRD", "DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "ENROUTE",
         "ACCEPTD", "UNKNOWN", "DELETED"]
DBS = (Db.MESSAGES, Db.CARRIER_IDS, Db.RECIPIENTS, Db.ERRORS, Db.EVENTS, Db.META)


class _Counted:
    """The store, counting the carrier-id gets of its read transactions."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.id_gets = 0

    def read(self, fn: Callable[[KvTxn], Any]) -> Any:
        outer = self

        class Txn:
            def __init__(self, tx: KvTxn) -> None:
                self._tx = tx

            def getter(self, db: Db) -> Callable[[bytes], bytes | None]:
                get = self._tx.getter(db)
                if db is not Db.CARRIER_IDS:
                    return get

                def counted(key: bytes) -> bytes | None:
                    outer.id_gets += 1
                    return get(key)
                return counted

            def __getattr__(self, name: str) -> Any:
                return getattr(self._tx, name)

        return self._store.read(lambda tx: fn(Txn(tx)))  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _Dispatcher:
    """``PendingCommits``: carrier ids answered but not committed; each ``wait_committed``
    commits the next group of them (carrier id + the part accepted), as the dispatcher's
    outcome commits do; ids in no group are never committed (the wait times out)."""

    def __init__(self, store: Store, uncommitted: dict[tuple[str, str], tuple[str, int]],
                 groups: list[list[tuple[str, str]]], awaiting: int) -> None:
        self._store = store
        self.uncommitted = dict(uncommitted)
        self.groups = [list(g) for g in groups]
        self.awaiting = awaiting
        self.waits = 0

    def pending_carrier_id(self, carrier: str, keys: Sequence[str]) -> tuple[str, int] | None:
        for k in keys:
            hit = self.uncommitted.get((carrier, k))
            if hit is not None:
                return hit
        return None

    def awaiting_response(self, carrier: str | None = None) -> int:
        return self.awaiting

    async def wait_committed(self) -> None:
        self.waits += 1
        if not self.groups:
            await trio.sleep_forever()
        group = self.groups.pop(0)
        batch = WriteBatch(urgent=True)
        for carrier, key in group:
            mid, part = self.uncommitted[(carrier, key)]
            batch.put_carrier_id(carrier, key, mid, part, NOW + 2)
            batch.update_message(mid, _Accept(part, key))
        await trio.sleep(0.001)
        await self._store.commit(batch)
        for ck in group:
            del self.uncommitted[ck]


class _Accept:
    def __init__(self, part: int, cid: str) -> None:
        self.part = part
        self.cid = cid

    def __call__(self, old: MessageRecord | None) -> MessageRecord | None:
        if old is None:
            return None
        parts = list(old.parts)
        parts[self.part] = msgspec.structs.replace(parts[self.part], status="accepted",
                                                   carrier_msg_id=self.cid, submit_status=0)
        return msgspec.structs.replace(old, parts=tuple(parts), status="submitted",
                                       updated_at=NOW + 2)


def _cid(rng: random.Random) -> str:
    return "A" + format(rng.getrandbits(36), "X")


def _form(rng: random.Random, cid: str) -> str:
    """How the receipt writes the id: as is, lower case, zero-padded, or its decimal value
    (found under its second key)."""
    kind = rng.randrange(5)
    if kind == 1:
        return cid.lower()
    if kind == 2:
        return "00" + cid
    if kind == 3:
        return str(int(cid, 16))
    return cid


Case = dict[str, Any]


def make_case(seed: int) -> Case:
    rng = random.Random(seed)
    phones = [f"+336123456{i:02d}" for i in range(rng.randint(1, 4))]
    records: list[MessageRecord] = []
    stored: list[tuple[str, str, int]] = []  # (cid, message id, part) committed
    uncommitted: dict[tuple[str, str], tuple[str, int]] = {}
    targets: list[str] = []
    for m in range(rng.randint(1, 6)):
        mid = f"M{seed}x{m}"
        n_parts = rng.choice([1, 1, 1, 2, 3])
        parts = []
        for i in range(n_parts):
            cid = _cid(rng)
            state = rng.choice(["stored", "stored", "pending", "pending", "pending", "lost",
                                "final"])
            if state in ("stored", "final"):
                stored.append((cid, mid, i))
                parts.append(PartRecord(
                    index=i, carrier="c1", carrier_msg_id=cid, submit_status=0,
                    submitted_at=NOW + 1,
                    status="delivered" if state == "final" else "accepted",
                    receipt_stat="DELIVRD" if state == "final" else None))
            else:
                uncommitted[("c1", cid)] = (mid, i)
                parts.append(PartRecord(index=i, carrier="c1", submitted_at=NOW + 1,
                                        status="sending"))
            targets.append(cid)
        if rng.random() < 0.9:  # else: a carrier id whose record is gone
            records.append(MessageRecord(
                id=mid, created_at=NOW, to=rng.choice(phones), text="hi", kind="campaign",
                campaign_id="camp", status="sending", encoding="gsm7", segments=n_parts,
                carrier="c1", route="+", parts=tuple(parts),
                history=(HistoryEntry(NOW, "queued"),), updated_at=NOW + 1,
                metadata=b'{"k":1}' if rng.random() < 0.2 else b""))
    receipts = []
    for _ in range(rng.randint(1, 12)):
        # 1 in 10 nobody's
        cid = "B" + format(rng.getrandbits(36), "X") if rng.random() < 0.1 \
            else rng.choice(targets)
        receipts.append((rng.choice(phones)[1:], _form(rng, cid), rng.choice(STATS)))
    if rng.random() < 0.3 and receipts:  # a repeat, later
        receipts.append(rng.choice(receipts))
    rng.shuffle(receipts)
    cuts = sorted(rng.sample(range(1, len(receipts)), min(rng.randint(0, 2),
                                                          len(receipts) - 1)))
    batches = [receipts[a:b] for a, b in zip([0, *cuts], [*cuts, len(receipts)], strict=True)]
    committable = [k for k in uncommitted if rng.random() < 0.9]
    rng.shuffle(committable)
    groups: list[list[tuple[str, str]]] = []
    while committable:
        n = rng.randint(1, 3)
        groups.append(committable[:n])
        committable = committable[n:]
    return {"phones": phones, "records": records, "stored": stored, "uncommitted": uncommitted,
            "groups": groups, "batches": batches, "awaiting": rng.choice([0, 0, 1])}


async def run_case(case: Case, config: GatewayConfig, *, fast: bool) -> dict[str, Any]:
    async with open_memory_store() as mem:
        await put_recipients(mem, case["phones"][:-1])  # the last one unknown
        batch = WriteBatch()
        for rec in case["records"]:
            batch.put_message(rec)
        for cid, mid, part in case["stored"]:
            batch.put_carrier_id("c1", cid, mid, part, NOW + 1)
        await mem.commit(batch)
        store = _Counted(mem)
        d = _Dispatcher(mem, case["uncommitted"], case["groups"], case["awaiting"])
        proc = InboundProcessor(store, config,  # type: ignore[arg-type]
                                RecipientCache(mem, policy=config.rules), None, d,
                                clock=lambda: NOW + 5)
        proc.wait_on_first_key = fast
        acks: list[tuple[int, int]] = []
        for b, items in enumerate(case["batches"]):
            inbs = [FakeInbound(receipt_pdu(src, cid, stat,
                                            "000" if stat == "DELIVRD" else "001"))
                    for src, cid, stat in items]
            for i, inb in enumerate(inbs):
                inb.ack = (lambda b=b, i=i: acks.append((b, i)) or True)  # type: ignore[method-assign]
            await proc.process(inbs)  # type: ignore[arg-type]
        dump = mem.read(lambda tx: {db.name: list(tx.scan(db)) for db in DBS})
        stats = msgspec.structs.asdict(proc.statistics())
        return {"dump": dump, "acks": acks, "stats": stats,
                "held": [h.receipt.message_id for h in proc._held],
                "waits": d.waits, "left": sorted(d.uncommitted), "id_gets": store.id_gets}


@pytest.mark.parametrize("chunk", range(8))
async def test_fast_path_matches_general_path(chunk: int, config: GatewayConfig,
                                              autojump_clock: Clock) -> None:
    fewer = waited = 0
    for seed in range(chunk * 50, chunk * 50 + 50):
        case = make_case(seed)
        general = await run_case(case, config, fast=False)
        fast = await run_case(case, config, fast=True)
        gets = general.pop("id_gets"), fast.pop("id_gets")
        assert fast == general, f"seed {seed}"
        assert gets[1] <= gets[0], f"seed {seed}"
        fewer += gets[1] < gets[0]
        waited += general["waits"] > 0
    # the cases do exercise the difference
    assert fewer >= 10 and waited >= 10


async def test_receipt_right_behind_its_response_reads_only_its_first_key(
        config: GatewayConfig, autojump_clock: Clock) -> None:
    # A decimal-looking hex id: three keys (id, its hex reading, its decimal reading).
    case: Case = {
        "phones": ["+33612345600"], "stored": [], "awaiting": 0,
        "records": [MessageRecord(
            id="M1", created_at=NOW, to="+33612345600", text="hi", kind="campaign",
            status="sending", encoding="gsm7", segments=1, carrier="c1", route="+",
            parts=(PartRecord(index=0, carrier="c1", status="sending"),), updated_at=NOW)],
        "uncommitted": {("c1", "12345"): ("M1", 0)}, "groups": [[("c1", "12345")]],
        "batches": [[("33612345600", "12345", "DELIVRD")]]}
    general = await run_case(case, config, fast=False)
    fast = await run_case(case, config, fast=True)
    # general: 3 misses, the wait, the hit; fast: the wait, the hit
    assert general["id_gets"] == 4 and fast["id_gets"] == 1
    assert fast["stats"]["receipts"] == 1 and fast["stats"]["unmatched"] == 0
    general.pop("id_gets"), fast.pop("id_gets")
    assert fast == general


async def test_pending_first_key_wins_over_another_reading(config: GatewayConfig,
                                                           autojump_clock: Clock) -> None:
    # Receipt id "12345" is pending for M1; its hex reading "3039" is M2's stored id. The
    # general path matches M2 at once (a miss-attribution); the fast path waits for M1's
    # commit and matches M1, the receipt's own submit.
    def rec(mid: str, status: str, cid: str | None) -> MessageRecord:
        return MessageRecord(
            id=mid, created_at=NOW, to="+33612345600", text="hi", kind="campaign",
            status=status, encoding="gsm7", segments=1, carrier="c1", route="+",
            parts=(PartRecord(index=0, carrier="c1", carrier_msg_id=cid, status=status),),
            updated_at=NOW)
    case: Case = {
        "phones": ["+33612345600"], "stored": [("3039", "M2", 0)], "awaiting": 0,
        "records": [rec("M1", "sending", None), rec("M2", "accepted", "3039")],
        "uncommitted": {("c1", "12345"): ("M1", 0)}, "groups": [[("c1", "12345")]],
        "batches": [[("33612345600", "12345", "DELIVRD")]]}
    general = await run_case(case, config, fast=False)
    fast = await run_case(case, config, fast=True)

    def statuses(result: dict[str, Any]) -> dict[str, str]:
        return {k.decode(): msgspec.msgpack.decode(v, type=MessageRecord).parts[0].status
                for k, v in result["dump"]["MESSAGES"]}
    assert statuses(general) == {"M1": "sending", "M2": "delivered"}
    assert statuses(fast) == {"M1": "delivered", "M2": "accepted"}


async def test_reused_carrier_id_goes_to_the_new_submit(config: GatewayConfig,
                                                       autojump_clock: Clock) -> None:
    # The carrier gave M2's submit the id it gave M1's long ago (M1 delivered). The receipt
    # right behind M2's submit_sm_resp: the general path reads M1's committed mapping first
    # and takes the receipt for a duplicate of M1's; the fast path does not read before the
    # commit, which maps the id to M2, and M2 gets it.
    def rec(mid: str, status: str, cid: str | None) -> MessageRecord:
        return MessageRecord(
            id=mid, created_at=NOW, to="+33612345600", text="hi", kind="campaign",
            status=status, encoding="gsm7", segments=1, carrier="c1", route="+",
            parts=(PartRecord(index=0, carrier="c1", carrier_msg_id=cid, status=status,
                              receipt_stat="DELIVRD" if status == "delivered" else None),),
            updated_at=NOW)
    case: Case = {
        "phones": ["+33612345600"], "stored": [("A77", "M1", 0)], "awaiting": 0,
        "records": [rec("M1", "delivered", "A77"), rec("M2", "sending", None)],
        "uncommitted": {("c1", "A77"): ("M2", 0)}, "groups": [[("c1", "A77")]],
        "batches": [[("33612345600", "A77", "DELIVRD")]]}
    general = await run_case(case, config, fast=False)
    fast = await run_case(case, config, fast=True)

    def statuses(result: dict[str, Any]) -> dict[str, str]:
        return {k.decode(): msgspec.msgpack.decode(v, type=MessageRecord).parts[0].status
                for k, v in result["dump"]["MESSAGES"]}
    assert general["stats"]["duplicates"] == 1 and general["waits"] == 0
    assert statuses(general) == {"M1": "delivered", "M2": "sending"}
    assert fast["stats"]["duplicates"] == 0 and fast["waits"] == 1
    assert statuses(fast) == {"M1": "delivered", "M2": "delivered"}
