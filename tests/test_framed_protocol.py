"""The framed protocol's codec: frames round-trip, the decoder finds them in any chunking and
after garbage, damaged frames are reported, payloads parse or fail loudly."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from factory.units.framed_payloads import (
    Commit,
    Count,
    Digest,
    Get,
    Hello,
    PathOnly,
    PayloadError,
    Put,
)
from factory.units.framed_protocol import (
    HEADER,
    MAGIC,
    MAX_PAYLOAD,
    REPLY,
    Corrupt,
    Frame,
    FrameDecoder,
    Op,
    Status,
    status_words,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "framed-protocol.md"

frames = st.builds(Frame, seq=st.integers(0, 0xFFFF), op=st.integers(0, 0xFF),
                   status=st.integers(0, 0xFF), payload=st.binary(max_size=300))


def decode_all(chunks: list[bytes]) -> list[Frame | Corrupt]:
    decoder = FrameDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in pairwise(points)]


def no_false_start(garbage: bytes, following: bytes) -> bool:
    """Whether no magic in `garbage` is followed by a plausible length (a false frame start
    that would, rightly, swallow the bytes it claims)."""
    stream = garbage + following
    at = stream.find(MAGIC)
    while 0 <= at < len(garbage):
        header = stream[at:at + HEADER.size]
        if len(header) < HEADER.size:
            return False
        length, check = int.from_bytes(header[6:8], "big"), int.from_bytes(header[8:10], "big")
        if length ^ check == 0xFFFF and length <= MAX_PAYLOAD:
            return False
        at = stream.find(MAGIC, at + 1)
    return True


@given(frames)
def test_a_frame_round_trips(frame: Frame) -> None:
    assert decode_all([frame.encode()]) == [frame]


@given(st.lists(st.tuples(st.binary(max_size=40) | st.just(MAGIC + b"\x00"), frames),
                min_size=1, max_size=5),
       st.lists(st.integers(0, 10_000), max_size=12))
def test_frames_are_found_among_garbage_in_any_chunking(
        pieces: list[tuple[bytes, Frame]], cuts: list[int]) -> None:
    for garbage, frame in pieces:
        assume(no_false_start(garbage, frame.encode()))
    stream = b"".join(garbage + frame.encode() for garbage, frame in pieces)
    assert decode_all(split(stream, cuts)) == [frame for _, frame in pieces]


@given(frames, st.integers(0, 10_000), st.integers(1, 255))
def test_a_damaged_frame_is_reported_and_the_next_still_decodes(
        frame: Frame, where: int, flip: int) -> None:
    data = bytearray(frame.encode())
    data[HEADER.size + where % (len(data) - HEADER.size)] ^= flip
    after = Frame(7, Op.HASH, payload=b"next")
    events = decode_all([bytes(data) + after.encode()])
    assert events == [Corrupt(frame.seq, frame.op, f"frame {frame.seq} failed its CRC check"),
                      after]


def test_garbage_alone_is_skipped_and_counted() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00noise" + MAGIC + b"\x00\x01\x02\x00\x00\x05\x12\x34") == []
    assert decoder.skipped >= 7
    frame = Frame(1, Op.HELLO)
    assert decoder.feed(frame.encode()) == [frame]


def test_a_length_beyond_the_limit_is_a_false_start() -> None:
    n = MAX_PAYLOAD + 1
    false = MAGIC + b"\x00\x01\x01\x00" + n.to_bytes(2, "big") + (n ^ 0xFFFF).to_bytes(2, "big")
    frame = Frame(2, Op.PUT, payload=b"x")
    assert decode_all([false + frame.encode()]) == [frame]


def test_an_abandoned_false_start_gives_back_the_frame_it_swallowed() -> None:
    false = MAGIC + b"\x00\x09\x01\x00\x01\x00\xfe\xff"  # claims 256 bytes that never come
    frame = Frame(3, Op.HELLO | REPLY, payload=b"hi")
    decoder = FrameDecoder()
    assert decoder.feed(false + frame.encode()) == []
    assert decoder.wanted == HEADER.size + 256 + 4 - len(false + frame.encode())
    assert decoder.skip_partial() == [frame]


def test_wanted_never_reaches_past_the_frame_in_progress() -> None:
    data = Frame(9, Op.GET | REPLY, payload=b"abcdef").encode()
    decoder, got = FrameDecoder(), list[Frame | Corrupt]()
    while not got:
        step = decoder.wanted
        assert step >= 1
        got = decoder.feed(data[:step])
        data = data[step:]
    assert data == b"" and got == [Frame(9, Op.GET | REPLY, payload=b"abcdef")]


def test_the_worked_example_in_the_docs_is_what_the_codec_sends() -> None:
    hello = Frame(1, Op.HELLO).encode()
    assert hello.hex(" ") == "a5 5a 00 01 01 00 00 00 ff ff 98 8a a8 e5"
    assert hello.hex(" ") in DOC.read_text()


payloads = [
    (Hello, Hello(1, 2048, "AQ-100", "02:00:00:12:34:56", "fw-1.4.2")),
    (Put, Put("/etc/factory/device.json5", 4096, b"\x00\xff" * 10)),
    (Put, Put("é", 0, b"")),
    (Commit, Commit("/a", 123456)),
    (Get, Get("/a/b", 7, 1024)),
    (PathOnly, PathOnly("x")),
    (Digest, Digest(bytes(range(32)), 99)),
    (Count, Count(2**32 - 1)),
]


@pytest.mark.parametrize(("kind", "value"), payloads)
def test_payloads_round_trip_and_truncation_is_an_error(kind: Any, value: Any) -> None:
    encoded = value.encode()
    assert kind.decode(encoded) == value
    if kind is not Put:  # PUT's data runs to the end, so only its header can be cut short
        with pytest.raises(PayloadError):
            kind.decode(encoded + b"!")
    with pytest.raises(PayloadError):
        kind.decode(encoded[:5] if kind is Put else encoded[:-1])


def test_texts_longer_than_a_length_byte_are_refused() -> None:
    with pytest.raises(PayloadError, match="at most 255"):
        PathOnly("x" * 256).encode()
    with pytest.raises(PayloadError, match="not UTF-8"):
        PathOnly.decode(b"\x01\xff")


def test_every_status_has_words() -> None:
    for status in Status:
        assert status_words(status) and "unknown" not in status_words(status)
    assert status_words(200) == "unknown status 0xc8"
