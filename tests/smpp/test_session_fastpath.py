"""The Session's receive fast path against its general path (differential).

``Session.receive_data`` handles submit_sm_resp and deliver_sm of a whole chunk straight
from the header (``codec.fast_submit_sm_resp`` / ``codec.fast_deliver_sm``); a chunk fed
byte by byte goes through the PduBuffer and ``_on_frame``/``decode()`` for every frame.
Both must give the same events, the same replies, the same state and the same counters,
for good frames and bad ones alike.
"""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.smpp.codec import decode, encode, fast_deliver_sm, fast_submit_sm_resp
from gateway.smpp.constants import MessageState, NetworkType
from gateway.smpp.errors import LocalProtocolError
from gateway.smpp.events import Event
from gateway.smpp.pdu import (
    BindTransmitter,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    Unbind,
    message_state_tlv,
    network_error_code_tlv,
    receipted_message_id_tlv,
)
from gateway.smpp.session import Session, SessionConfig, SessionState, SessionStats

from .helpers import SessionPair, feed_bytewise

CONFIG = SessionConfig(window=16, response_timeout=5, enquire_link_interval=30)
SUBMIT = SubmitSm(source_addr="Shop", destination_addr="447700900123", short_message=b"hi")
RECEIPT = DeliverSm(
    source_addr_ton=1, source_addr_npi=1, source_addr="447700900123", dest_addr_ton=5,
    destination_addr="Shop", esm_class=0x04,
    short_message=b"id:1f sub:001 dlvrd:001 submit date:2611221430 done date:2611221431 "
                  b"stat:DELIVRD err:000 text:hi",
    tlvs=(receipted_message_id_tlv("1f"), message_state_tlv(MessageState.DELIVERED),
          network_error_code_tlv(NetworkType.GSM, 0)),
)  # fmt: skip
MO = DeliverSm(source_addr="447700900123", destination_addr="Shop", short_message=b"STOP")


def pair(kind: type[BindTransmitter] | None = None, inflight: int = 6) -> SessionPair:
    """A bound pair whose ESME has ``inflight`` submit_sm (seq 2..) and an enquire_link
    (the caller's own, seq inflight + 2) awaiting answers."""
    p = SessionPair(CONFIG, CONFIG)
    if kind is None:
        p.bind()
    else:
        p.bind(kind)
    for _ in range(inflight):
        p.esme.send_request(SUBMIT, 0)
    p.esme.send_request(EnquireLink(), 0)
    p.esme.data_to_send()
    return p


def stats(s: Session) -> SessionStats:
    st = s.statistics()
    if st.state is SessionState.ERROR:
        # Fed byte by byte, the octets after a lost frame boundary are not even counted.
        return msgspec.structs.replace(st, bytes_received=0)
    return st


def run_both(wire: bytes, *, kind: type[BindTransmitter] | None = None,
             chunks: list[int] | None = None) -> list[Event]:
    """Feed ``wire`` whole to one session and byte by byte (or in ``chunks``) to another;
    assert they agree; return the events."""
    whole, split = pair(kind), pair(kind)
    whole.esme.receive_data(wire, 1.0)
    events = whole.esme.events()
    if chunks is None:
        split_events = feed_bytewise(split.esme, wire, 1.0)
    else:
        split_events = []
        pos = 0
        for n in [*chunks, len(wire)]:
            if pos < len(wire):
                split.esme.receive_data(wire[pos : pos + n], 1.0)
                split_events += split.esme.events()
            pos += n
    assert events == split_events
    assert repr(events) == repr(split_events)  # same types too (CommandId, not int)
    assert whole.esme.data_to_send() == split.esme.data_to_send()
    assert whole.esme.state is split.esme.state
    assert stats(whole.esme) == stats(split.esme)
    assert whole.esme.inflight() == split.esme.inflight()
    return events


def resp(message_id: str = "1f", seq: int = 2, status: int = 0, **kw: object) -> bytes:
    return encode(SubmitSmResp(message_id=message_id, **kw), seq=seq, status=status)  # type: ignore[arg-type]


def patch(frame: bytes, at: int, raw: bytes) -> bytes:
    return frame[:at] + raw + frame[at + len(raw):]


CASES: dict[str, bytes] = {
    "resp": resp(),
    "resp-status": resp("", seq=3, status=0x58),
    "resp-empty-body": encode(SubmitSmResp(), seq=2, status=0x58),
    "resp-header-only-ok": b"\x00\x00\x00\x10\x80\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x02",
    "resp-tlvs": resp(tlvs=(Tlv(0x1403, b"x"),)),
    "resp-long-id": patch(resp("a" * 64), 16, b"b" * 65),  # no NUL within 65 octets
    "resp-trailing": resp() + b"",
    "resp-extra-octets": b"\x00\x00\x00\x14\x80\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x02"
                         b"1f\x00\x00",
    "resp-unknown-seq": resp(seq=99),
    "resp-to-enquire-link": resp(seq=8),
    "resp-twice": resp(seq=2) + resp(seq=2),
    "nack": encode(GenericNack(), seq=4, status=3),
    "receipt": encode(RECEIPT, seq=7),
    "mo": encode(MO, seq=8),
    "deliver-dup-seq": encode(MO, seq=8) + encode(RECEIPT, seq=8),
    "deliver-bad-sm-length": patch(encode(MO, seq=9), 16 + 1 + 2 + 13 + 2 + 5 + 3 + 2 + 4, b"\xff"),
    "deliver-truncated-tlv": patch(encode(RECEIPT, seq=10)[:-2], 0,
                                   (len(encode(RECEIPT, seq=10)) - 2).to_bytes(4, "big")),
    "deliver-after-unbind": encode(Unbind(), seq=11) + encode(RECEIPT, seq=12),
    "enquire-link-between": resp() + encode(EnquireLink(), seq=13) + encode(MO, seq=14),
    "bad-length-after": resp() + b"\x00\x00\x00\x05junk" + encode(MO, seq=15),
    "partial-tail": resp() + encode(RECEIPT, seq=16)[:30],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_path_equals_general_path(name: str) -> None:
    wire = CASES[name]
    run_both(wire)
    run_both(wire + encode(MO, seq=77))  # and with trailing bytes
    run_both(wire, chunks=[len(wire) // 2])


def test_deliver_sm_to_a_transmitter_takes_the_general_path() -> None:
    # deliver_sm is illegal in BOUND_TX (SMPP 3.4 §2.3): refused the same way both ways.
    events = run_both(encode(RECEIPT, seq=7) + resp(), kind=BindTransmitter)
    assert [type(e).__name__ for e in events] == ["PeerProtocolError", "ResponseReceived"]


def test_fast_path_events() -> None:
    events = run_both(resp("1f", seq=2) + encode(RECEIPT, seq=7) + resp("20", seq=3))
    assert [type(e).__name__ for e in events] == [
        "ResponseReceived", "RequestReceived", "ResponseReceived"]
    first = events[0]
    assert first.seq == 2 and first.pdu == SubmitSmResp(message_id="1f")  # type: ignore[union-attr]
    assert first.request == SUBMIT  # type: ignore[union-attr]
    assert events[1].pdu == RECEIPT  # type: ignore[union-attr]


SAMPLES: list[tuple[Pdu, int]] = [
    (SubmitSmResp(message_id="1f"), 0), (SubmitSmResp(), 0x58),
    (SubmitSmResp(message_id="x", tlvs=(Tlv(0x1403, b"a"),)), 0), (RECEIPT, 0), (MO, 0),
    (DeliverSmResp(), 0), (EnquireLink(), 0), (GenericNack(), 8), (Unbind(), 0),
]


def mutate(frame: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(frame)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    return bytes(buf[:cut] if cut is not None else buf)


frame_st = st.builds(
    mutate,
    st.builds(lambda s, seq: encode(s[0], seq=seq, status=s[1]),
              st.sampled_from(SAMPLES), st.integers(1, 12)),
    st.lists(st.tuples(st.integers(4, 250), st.integers(0, 255)), max_size=2),
    st.one_of(st.none(), st.none(), st.integers(0, 200)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(frame_st, max_size=8), seed=st.integers(0, 1 << 16))
def test_random_streams_agree(frames: list[bytes], seed: int) -> None:
    wire = b"".join(frames)
    if not wire:
        return  # b"" is EOF, not data
    run_both(wire)
    rng = random.Random(seed)
    run_both(wire, chunks=[rng.randint(1, 60) for _ in range(8)])


@given(frame=frame_st)
@settings(max_examples=300, deadline=None)
def test_fast_decoders_agree_with_decode(frame: bytes) -> None:
    # Whatever the fast decoders return is decode()'s answer; when they decline, decode()
    # decides (answer or DecodeError).
    for fast, cid in ((fast_submit_sm_resp, 0x80000004), (fast_deliver_sm, 0x00000005)):
        if len(frame) < 16 or int.from_bytes(frame[4:8], "big") != cid:
            continue
        if int.from_bytes(frame[:4], "big") != len(frame):
            continue
        try:
            body = fast(frame)
        except Exception:
            continue
        assert decode(frame).pdu == body


# --- acknowledge: send_response of the empty response, from a template for status 0 -------


def delivered(pdus: list[Pdu]) -> tuple[SessionPair, list[int]]:
    p = pair()
    p.esme.receive_data(b"".join(encode(d, seq=10 + i) for i, d in enumerate(pdus)), 1.0)
    return p, [e.seq for e in p.esme.events()]  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [0, 8, 0x45])
@pytest.mark.parametrize("request_pdu", [RECEIPT, MO, DataSm(destination_addr="1")])
def test_acknowledge_equals_send_response(request_pdu: Pdu, status: int) -> None:
    a, seqs = delivered([request_pdu, request_pdu])
    b, _ = delivered([request_pdu, request_pdu])
    resp = DataSmResp() if isinstance(request_pdu, DataSm) else DeliverSmResp()
    for seq in seqs:
        a.esme.acknowledge(seq, status)
        b.esme.send_response(seq, resp, status)
    assert a.esme.data_to_send() == b.esme.data_to_send()
    assert a.esme.statistics() == b.esme.statistics()
    with pytest.raises(LocalProtocolError, match="no request"):
        a.esme.acknowledge(seqs[0])  # answered already


def test_acknowledge_misuse() -> None:
    p, (seq,) = delivered([RECEIPT])
    with pytest.raises(LocalProtocolError, match="no request with sequence_number 99"):
        p.esme.acknowledge(99)
    p.esme.close()
    with pytest.raises(LocalProtocolError, match="cannot respond"):
        p.esme.acknowledge(seq)
    assert p.esme.data_to_send() == b""


def test_acknowledge_bind_in_the_smsc_role() -> None:
    p = SessionPair(CONFIG, CONFIG)
    p.esme.send_request(BindTransmitter(system_id="x"), 0)
    (req,) = p.to_smsc()
    p.smsc.acknowledge(req.seq)  # type: ignore[union-attr]
    assert p.smsc.state is SessionState.BOUND_TX
    (ok,) = p.to_esme()
    assert type(ok).__name__ == "BindSucceeded"
