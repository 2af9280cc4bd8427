"""Hypothesis properties of the codec and the framing.

- Any bytes into decode(), or into PduBuffer then decode(), give frames or the codec's
  own errors (DecodeError / FramingError), never anything else, and never hang.
- Mutated valid frames (flipped octets, truncation, insertion, length rewrites) likewise.
- The hand-written fast paths agree with the generic table-driven codec.
- decode(encode(p)) == p for generated valid PDUs of every type.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.smpp import (
    PDU_TYPES,
    DecodeError,
    DistributionList,
    EncodeError,
    FramingError,
    Pdu,
    PduBuffer,
    SmeAddress,
    Tag,
    Tlv,
    UnsuccessSme,
    decode,
    encode,
)
from gateway.smpp import codec as C

from .samples import ALL

pytestmark = pytest.mark.slow

FRAMES = [encode(p, seq=i + 1) for i, p in enumerate(ALL)]
HOT = [f for f in FRAMES if struct.unpack(">I", f[4:8])[0] in (4, 5, 0x80000004, 0x80000005)]
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip


def decode_or_error(data: bytes) -> object:
    try:
        return decode(data)
    except DecodeError as e:
        assert isinstance(e.status, int) and e.field
        return e


def stream_frames(data: bytes, max_length: int = 4096) -> list[object]:
    """Everything PduBuffer + decode make of a byte stream (bounded: each frame is ≥16 octets)."""
    buf = PduBuffer(max_length=max_length)
    buf.feed(data)
    out: list[object] = []
    for _ in range(len(data) // 16 + 1):
        try:
            frame = buf.next_frame()
        except FramingError as e:
            out.append(e)
            break
        if frame is None:
            break
        out.append(decode_or_error(frame))
    else:
        assert buf.next_frame() is None
    return out


# --- arbitrary input -----------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=400))
@example(b"")
@example(b"\x00\x00\x00\x10\x80\x00\x00\x00" + bytes(8))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    decode_or_error(data)


@SETTINGS
@given(st.integers(0, 0xFFFFFFFF), st.sampled_from(sorted(PDU_TYPES)), st.binary(max_size=300))
def test_decode_arbitrary_body_with_valid_header(status: int, cid: int, body: bytes) -> None:
    """A consistent header with a random body reaches every body decoder."""
    decode_or_error(struct.pack(">IIII", 16 + len(body), cid, status, 1) + body)


@SETTINGS
@given(st.binary(max_size=600))
def test_stream_arbitrary_bytes(data: bytes) -> None:
    stream_frames(data)


@SETTINGS
@given(st.lists(st.sampled_from(FRAMES), max_size=5), st.binary(max_size=40), st.integers(1, 64))
def test_stream_chunked_equals_whole(frames: list[bytes], tail: bytes, chunk: int) -> None:
    data = b"".join(frames) + tail
    whole = stream_frames(data, max_length=1 << 20)
    buf = PduBuffer(max_length=1 << 20)
    got: list[object] = []
    failed = False
    for i in range(0, len(data), chunk):
        buf.feed(data[i : i + chunk])
        while not failed:
            try:
                f = buf.next_frame()
            except FramingError as e:
                got.append(e)
                failed = True
                break
            if f is None:
                break
            got.append(decode_or_error(f))
    assert [type(x) for x in got] == [type(x) for x in whole]
    assert [x for x in got if not isinstance(x, Exception)] == [
        x for x in whole if not isinstance(x, Exception)
    ]


# --- mutated valid frames ---------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, pool: list[bytes] = FRAMES) -> bytes:
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        i = draw(st.integers(16, max(16, len(data))))
        if op == "flip" and i < len(data):
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and i < len(data):
            data[i] = draw(st.sampled_from([0, 1, 0x7F, 0xFF, 0xFE, 21, 65]))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 8))]
    if draw(st.booleans()):  # keep command_length consistent so the body decoders run
        data[0:4] = struct.pack(">I", len(data))
    return bytes(data)


@SETTINGS
@given(mutated())
def test_decode_mutated_frames(data: bytes) -> None:
    decode_or_error(data)


@SETTINGS
@given(mutated())
def test_stream_mutated_frames(data: bytes) -> None:
    stream_frames(data + FRAMES[0])


FAST_DECODERS = {cls.command_id: (fn, cls) for cls, fn in C._FAST_DECODERS.items()}


@SETTINGS
@given(st.one_of(mutated(HOT), mutated(FRAMES)))
def test_fast_decoders_agree_with_generic(data: bytes) -> None:
    if len(data) < 16 or struct.unpack(">I", data[:4])[0] != len(data):
        return
    entry = FAST_DECODERS.get(struct.unpack(">I", data[4:8])[0])
    if entry is None:
        return
    fast, cls = entry
    try:
        got = fast(data)
    except Exception:
        return  # decode() then asks the generic decoder; nothing to compare
    assert C._decode_generic(cls, data) == got


# --- generated valid PDUs ------------------------------------------------------------------

LATIN1 = st.characters(min_codepoint=1, max_codepoint=255)


def cstr(size: int) -> st.SearchStrategy[str]:
    return st.text(LATIN1, max_size=size - 1)


TIME = st.one_of(st.just(""), st.text(LATIN1, min_size=16, max_size=16))
U8 = st.integers(0, 255)
TLVS = st.lists(
    st.builds(Tlv, st.integers(0, 0xFFFF).filter(lambda t: t != Tag.MESSAGE_PAYLOAD),
              st.binary(max_size=20)),
    max_size=4,
).map(tuple)  # fmt: skip
DEST = st.one_of(
    st.builds(SmeAddress, dest_addr_ton=U8, dest_addr_npi=U8, destination_addr=cstr(21)),
    st.builds(DistributionList, dl_name=cstr(21)),
)
UNSUCC = st.builds(UnsuccessSme, dest_addr_ton=U8, dest_addr_npi=U8, destination_addr=cstr(21),
                   error_status_code=st.integers(0, 0xFFFFFFFF))  # fmt: skip


def pdu_strategy(cls: type[Pdu]) -> st.SearchStrategy[Pdu]:
    fields: dict[str, st.SearchStrategy[object]] = {}
    for kind, name, size, _ in C._SPECS[cls]:
        if kind == C._CSTR:
            fields[name] = cstr(size)
        elif kind == C._TIME:
            fields[name] = TIME
        elif kind == C._U8:
            fields[name] = U8
        elif kind == C._SM:
            fields[name] = st.binary(max_size=254)
        elif kind == C._TLVS:
            fields[name] = TLVS
        elif kind == C._DESTS:
            fields[name] = st.lists(DEST, min_size=1, max_size=6).map(tuple)
        else:
            fields[name] = st.lists(UNSUCC, max_size=4).map(tuple)
    return st.fixed_dictionaries(fields).map(lambda kw: C._CONSTRUCTORS[cls](**kw))


ANY_PDU = st.sampled_from(sorted(PDU_TYPES.values(), key=lambda c: c.command_id)).flatmap(
    pdu_strategy
)


@SETTINGS
@given(ANY_PDU, st.integers(0, 0xFFFFFFFF), st.sampled_from([0, 0, 0x58, 0x45]))
def test_round_trip_generated(pdu: Pdu, seq: int, status: int) -> None:
    data = encode(pdu, seq=seq, status=status)
    assert data == C._encode_generic(pdu, seq, status)
    f = decode(data)
    assert (f.command_id, f.command_status, f.sequence_number) == (pdu.command_id, status, seq)
    assert f.pdu == pdu
    assert encode(f.pdu, seq=seq, status=status) == data


@SETTINGS
@given(ANY_PDU, st.data())
def test_encode_invalid_fields_raise_encode_error_naming_the_field(
    pdu: Pdu, data: st.DataObject
) -> None:
    """Break one C-string or integer field: fast and generic both raise, naming it."""
    spec = [f for f in C._SPECS[type(pdu)] if f[0] in (C._CSTR, C._TIME, C._U8)]
    if not spec:
        return
    kind, name, size, _ = data.draw(st.sampled_from(spec))
    if kind == C._U8:
        bad: object = data.draw(st.sampled_from([-1, 256, 1 << 40]))
    else:
        bad = data.draw(st.sampled_from(["x" * size, "a\0b", "\u20ac", "y" * 200]))
        if kind == C._TIME and bad == "x" * size:
            bad = "x" * 15
    kw = {f: getattr(pdu, f) for f in pdu.__struct_fields__}
    kw[name] = bad
    broken = C._CONSTRUCTORS[type(pdu)](**kw)
    if broken == C._EMPTY_RESP.get(type(pdu)):
        return
    with pytest.raises(EncodeError) as ei:
        encode(broken, seq=1)
    assert ei.value.field == name
