"""The sans-I/O frame decoder and encoder, fed bytes cut every possible way."""

from __future__ import annotations

import pytest
from hostile import joining
from hypothesis import given
from hypothesis import strategies as st

from aioudf import FrameDecoder, FrameError, FrameTooLarge, encode_frame
from aioudf.wire._frames import encode_uvarint


def reference_uvarint(value: int) -> bytes:
    """Base-128 little-endian, high bit = more: the textbook definition."""
    out = []
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def drain(decoder: FrameDecoder) -> list[bytes]:
    bodies = []
    while (body := decoder.next_frame()) is not None:
        bodies.append(bytes(body))
    return bodies


def decode_in_chunks(stream: bytes, cuts: list[int], **kwargs: int) -> list[bytes]:
    decoder = FrameDecoder(**kwargs)
    bodies: list[bytes] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        decoder.feed(stream[start:cut])
        bodies.extend(drain(decoder))
        start = cut
    decoder.feed_eof()
    return bodies


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_uvarint_matches_the_definition(value: int) -> None:
    assert encode_uvarint(value) == reference_uvarint(value)


@pytest.mark.parametrize("value", [-1, 2**64])
def test_uvarint_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_uvarint(value)


bodies_strategy = st.lists(st.binary(max_size=300), max_size=30)


@given(bodies_strategy, st.lists(st.integers(min_value=0, max_value=10_000)), st.booleans())
def test_any_chunking_gives_back_the_same_frames(
    bodies: list[bytes], cuts: list[int], join: bool
) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    cuts = [c for c in cuts if c <= len(stream)]
    with joining(join):
        assert decode_in_chunks(stream, cuts) == bodies


def test_one_byte_at_a_time() -> None:
    bodies = [b"", b"x", b"y" * 127, b"z" * 128, b"w" * 20_000]
    stream = b"".join(encode_frame(b) for b in bodies)
    assert decode_in_chunks(stream, list(range(len(stream)))) == bodies


def test_many_frames_in_one_chunk() -> None:
    bodies = [bytes([i % 256]) * (i % 50) for i in range(5000)]
    stream = b"".join(encode_frame(b) for b in bodies)
    assert decode_in_chunks(stream, []) == bodies


def test_a_large_body_arriving_in_small_pieces() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    stream = encode_frame(body) + encode_frame(b"next")
    cuts = list(range(0, len(stream), 4096))
    assert decode_in_chunks(stream, cuts) == [body, b"next"]


def test_whole_frames_are_handed_out_without_copying() -> None:
    chunk = encode_frame(b"abc") + encode_frame(b"defg")
    decoder = FrameDecoder()
    decoder.feed(chunk)
    first = decoder.next_frame()
    assert isinstance(first, memoryview)
    assert first.obj is chunk  # a view into the bytes received


@given(
    bodies_strategy,
    st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(0, 5))),
    st.booleans(),
)
def test_chunks_fed_while_frames_wait_come_back_in_order(
    bodies: list[bytes], cuts: list[tuple[int, int]], join: bool
) -> None:
    # A reader feeds what it receives whether or not the frames before were
    # taken (a full backlog takes only some): nothing is lost or reordered,
    # and `buffered` counts every byte not handed out.
    with joining(join):
        _feed_while_frames_wait(bodies, cuts)


def _feed_while_frames_wait(bodies: list[bytes], cuts: list[tuple[int, int]]) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    decoder = FrameDecoder()
    got: list[bytes] = []
    start = 0
    for cut, take in sorted((c, t) for c, t in cuts if c <= len(stream)):
        decoder.feed(stream[start:cut])
        start = max(start, cut)
        for _ in range(take):
            if (body := decoder.next_frame()) is None:
                break
            got.append(bytes(body))
        handed_out = sum(len(encode_frame(b)) for b in got)
        assert decoder.buffered == start - handed_out
    decoder.feed(stream[start:])
    got.extend(drain(decoder))
    decoder.feed_eof()
    assert got == bodies


def test_a_chunk_fed_while_frames_wait_is_not_copied() -> None:
    # Joining a large chunk to what is left of the last copied all of it
    # (tens of KiB a read on a pipe): it waits behind instead, and a frame
    # cut between the two is the only thing gathered.
    frames = [encode_frame(bytes([i]) * (50 if i < 3 else 20_000)) for i in range(4)]
    first = frames[0] + frames[1] + frames[2][:20]
    second = frames[2][20:] + frames[3]
    decoder = FrameDecoder()
    decoder.feed(first)
    assert bytes(decoder.next_frame() or b"") == bytes([0]) * 50  # one taken, one waits
    decoder.feed(second)
    assert decoder.buffered == len(first) + len(second) - len(frames[0])
    assert decoder.unconsumed() == b"".join(frames[1:])
    waiting = decoder.next_frame()
    assert waiting is not None and waiting.obj is first
    cut = decoder.next_frame()
    assert cut is not None and bytes(cut) == bytes([2]) * 50
    last = decoder.next_frame()
    assert last is not None and last.obj is second and bytes(last) == bytes([3]) * 20_000
    assert decoder.next_frame() is None and decoder.needs_data


def test_oversized_length_is_refused_before_buffering_the_body() -> None:
    decoder = FrameDecoder(max_frame_size=1000)
    decoder.feed(encode_frame(b"ok"))
    decoder.feed(encode_uvarint(1001) + b"x" * 10)
    assert bytes(decoder.next_frame() or b"") == b"ok"  # what came before is not lost
    with pytest.raises(FrameTooLarge, match="1001 bytes exceeds the maximum frame size of 1000"):
        decoder.next_frame()
    assert decoder.buffered < 1001


def test_huge_length_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder()
    # 2**60: the decoder must not wait for (or allocate) the body.
    decoder.feed(encode_uvarint(2**60)[:9])
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()


def test_unfinished_header_already_too_large_names_a_lower_bound() -> None:
    decoder = FrameDecoder(max_frame_size=1000)
    # Two of five header bytes: the length is 16383 or more, whatever follows.
    decoder.feed(encode_uvarint(2**35 - 1)[:2])
    with pytest.raises(FrameTooLarge) as caught:
        decoder.next_frame()
    assert str(caught.value) == (
        "frame of at least 16383 bytes exceeds the maximum frame size of 1000 bytes"
    )


def test_errors_are_sticky() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    decoder.feed(encode_uvarint(11))
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"more")
    with pytest.raises(FrameTooLarge):
        decoder.feed_eof()


def test_varint_longer_than_ten_bytes() -> None:
    decoder = FrameDecoder(max_frame_size=2**70)
    decoder.feed(b"\x80" * 11)
    with pytest.raises(FrameError, match="longer than 10 bytes"):
        decoder.next_frame()


def test_varint_beyond_64_bits() -> None:
    decoder = FrameDecoder(max_frame_size=2**70)
    decoder.feed(b"\xff" * 9 + b"\x7f")
    with pytest.raises(FrameError, match="more than 64 bits"):
        decoder.next_frame()


def test_stream_ending_inside_a_body() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"hello")[:4])
    assert decoder.next_frame() is None
    with pytest.raises(FrameError, match="received 3 of 5 body bytes"):
        decoder.feed_eof()


def test_stream_ending_inside_a_header() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_uvarint(300)[:1])
    assert decoder.next_frame() is None
    with pytest.raises(FrameError, match="inside a frame header"):
        decoder.feed_eof()


def test_clean_end_of_stream() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"a"))
    assert drain(decoder) == [b"a"]
    decoder.feed_eof()  # no error


def test_fed_bytearray_may_be_reused_by_the_caller() -> None:
    buffer = bytearray(encode_frame(b"abc"))
    decoder = FrameDecoder()
    decoder.feed(buffer)
    buffer[1:] = b"XYZ"
    assert bytes(decoder.next_frame() or b"") == b"abc"


def test_varint_beyond_64_bits_is_a_bad_header_even_under_a_small_limit() -> None:
    # The first nine bytes announce 0: only the tenth breaks the 64 bits.
    decoder = FrameDecoder(max_frame_size=0)
    decoder.feed(b"\x80" * 9 + b"\x02")
    with pytest.raises(FrameError, match="more than 64 bits"):
        decoder.next_frame()
    # When the first nine already announce too much, that is said first.
    decoder = FrameDecoder(max_frame_size=10)
    decoder.feed(b"\xff" * 9 + b"\x7f")
    with pytest.raises(FrameTooLarge, match="at least"):
        decoder.next_frame()
