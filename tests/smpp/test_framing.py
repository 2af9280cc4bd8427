"""PduBuffer: frames cut from a stream, whole, byte by byte, in chunks; bad lengths."""

from __future__ import annotations

import struct

import pytest

from gateway.smpp import (
    CommandStatus,
    EnquireLink,
    FramingError,
    PduBuffer,
    RemoteProtocolError,
    SubmitSm,
    encode,
)

FRAMES = [encode(EnquireLink(), seq=i) for i in range(1, 4)] + [
    encode(SubmitSm(destination_addr="1555", short_message=b"x" * i), seq=10 + i)
    for i in (0, 1, 200)
]
STREAM = b"".join(FRAMES)


def test_whole_stream() -> None:
    buf = PduBuffer()
    buf.feed(STREAM)
    assert buf.frames() == FRAMES
    assert buf.next_frame() is None
    assert buf.pending == 0


def test_byte_by_byte_returns_none_until_complete() -> None:
    buf = PduBuffer()
    got = []
    for i in range(len(STREAM)):
        buf.feed(STREAM[i : i + 1])
        f = buf.next_frame()
        if f is not None:
            got.append(f)
            assert STREAM[: i + 1].endswith(f)
    assert got == FRAMES


@pytest.mark.parametrize("chunk", [2, 3, 7, 16, 17, 100, 1000])
def test_chunked(chunk: int) -> None:
    buf = PduBuffer()
    got = []
    for i in range(0, len(STREAM), chunk):
        buf.feed(memoryview(STREAM)[i : i + chunk])
        got.extend(buf.frames())
    assert got == FRAMES


def test_trailing_bytes_left_intact() -> None:
    buf = PduBuffer()
    buf.feed(FRAMES[0] + FRAMES[3][:20])
    assert buf.next_frame() == FRAMES[0]
    assert buf.next_frame() is None
    assert buf.pending == 20
    buf.feed(FRAMES[3][20:])
    assert buf.next_frame() == FRAMES[3]
    assert buf.pending == 0


@pytest.mark.parametrize("length", [0, 1, 15, 4097, 0xFFFFFFFF])
def test_bad_length_raises_early_and_sticks(length: int) -> None:
    buf = PduBuffer(max_length=4096)
    buf.feed(struct.pack(">I", length))  # only the length: we must not wait for more
    with pytest.raises(FramingError) as ei:
        buf.next_frame()
    assert ei.value.status == CommandStatus.RINVCMDLEN
    assert ei.value.length == length
    assert isinstance(ei.value, RemoteProtocolError)
    buf.feed(FRAMES[0])
    with pytest.raises(FramingError):
        buf.next_frame()


def test_frames_returns_good_frames_before_a_bad_length() -> None:
    buf = PduBuffer()
    buf.feed(FRAMES[0] + FRAMES[1] + b"\x00\x00\x00\x05")
    assert buf.frames() == FRAMES[:2]
    with pytest.raises(FramingError):
        buf.frames()


def test_exact_bounds_accepted() -> None:
    buf = PduBuffer(max_length=32)
    frame = struct.pack(">IIII", 32, 0x80000004, 0, 1) + b"a" * 15 + b"\0"
    buf.feed(FRAMES[0] + frame)
    assert buf.frames() == [FRAMES[0], frame]


def test_invalid_max_length() -> None:
    with pytest.raises(ValueError):
        PduBuffer(max_length=15)


def test_many_small_frames_in_one_chunk_and_compaction() -> None:
    frame = FRAMES[0]
    buf = PduBuffer()
    buf.feed(frame * 10_000 + frame[:5])
    assert len(buf.frames()) == 10_000
    assert buf.pending == 5
    buf.feed(frame[5:])
    assert buf.frames() == [frame]
    # interleaved feeding keeps the internal buffer bounded
    for _ in range(5000):
        buf.feed(frame + frame[:8])
        buf.next_frame()
        buf.feed(frame[8:])
        buf.next_frame()
    assert buf.pending == 0
    assert len(buf._buf) < 100_000
