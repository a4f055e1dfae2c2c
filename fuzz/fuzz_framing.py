"""Coverage-guided fuzzing of FrameDecoder and UDFConnection (atheris).

    .venv/bin/python fuzz/fuzz_framing.py fuzz/corpus/framing -max_total_time=600

The input picks a maximum frame size, where the stream is cut, whether the
next chunk is fed before the frames are taken, whether small chunks are
joined (tests/hostile.py's ``joining``) and whether Points come raw; the
rest is the byte stream.
The oracles are tests/hostile.py's: the same frames and error as a reference
decoder, and the requests, keepalive answers and error of a reference
decoder with the order rules, in runs of points of any size.
"""

from __future__ import annotations

import logging
import sys

import _paths  # noqa: F401 - sys.path set-up
import atheris

with atheris.instrument_imports():
    from hostile import check_frame_decoder, check_request_decoder, joining

    import aioudf.wire._frames
    import aioudf.wire._protocol

MAX_SIZES = [0, 1, 127, 128, 300, 16_384, aioudf.wire._frames.DEFAULT_MAX_FRAME_SIZE, 2**63]


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    max_size = provider.PickValueInList(MAX_SIZES)
    count = provider.ConsumeIntInRange(0, 8)
    cuts = [provider.ConsumeIntInRange(0, 4096) for _ in range(count)]
    hold = [provider.ConsumeBool() for _ in range(count)]
    join = provider.ConsumeBool()
    raw = provider.ConsumeBool()
    stream = provider.ConsumeBytes(provider.remaining_bytes())
    limits = [1 + (c % 300) for c in cuts]
    with joining(join):
        check_frame_decoder(stream, cuts, max_size, hold)
        check_request_decoder(stream, cuts, max_size, limits, raw_points=raw)


def main() -> None:
    # Every hostile connection logs a warning: too much noise at thousands a second.
    logging.getLogger("aioudf").setLevel(logging.CRITICAL)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
