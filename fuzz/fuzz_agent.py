"""Coverage-guided fuzzing of a whole Agent fed hostile streams (atheris).

    .venv/bin/python fuzz/fuzz_agent.py fuzz/corpus/agent -max_total_time=600

Each input runs one agent in a fresh event loop, over in-memory pipes, with
the async or the blocking echo handler of tests/hostile.py. The first bytes
choose the mode, the handler, the maximum frame size and where the stream is
cut. The rest is a raw byte stream (checked with the invariants of every
connection), a session of valid requests in any order plus a tail (checked
against the exact replies of the session model), or an Init carrying fuzzed
options followed by raw bytes (which must get its InitResponse first).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import _paths  # noqa: F401 - sys.path set-up
import atheris

with atheris.instrument_imports():
    from hostile import (
        TAILS,
        BlockingEcho,
        Echo,
        Step,
        check_outcome,
        check_session,
        cut,
        drive_agent,
        expected_session,
        session_stream,
    )

    import aioudf.runtime._agent
    import aioudf.toolkit._options
    import aioudf.wire._protocol  # noqa: F401 - instrumented for coverage
    from aioudf import encode_frame
    from aioudf._pb import udf_pb2 as pb
    from aioudf.toolkit._handler import describe

KINDS = ["info", "init", "keepalive", "snapshot", "restore", "begin", "point", "end"]
GROUPS = ["", "host=a", "cpu=cpu0,host=b"]


def session_from(provider: atheris.FuzzedDataProvider) -> list[Step]:
    steps: list[Step] = []
    for _ in range(provider.ConsumeIntInRange(0, 30)):
        kind = provider.PickValueInList(KINDS)
        arg: object = None
        if kind in ("keepalive", "point"):
            arg = provider.ConsumeIntInRange(0, 2**62)
        elif kind == "restore":
            arg = provider.ConsumeBytes(provider.ConsumeIntInRange(0, 8))
        elif kind in ("begin", "end"):
            arg = provider.PickValueInList(GROUPS)
        steps.append((kind, arg))
    return steps


OPTION_NAMES = ["flag", "count", "ratio", "label", "on", "every", "pair", "nope"]
VALUE_MEMBERS = ["", "boolValue", "intValue", "doubleValue", "stringValue", "durationValue"]


def init_from(provider: atheris.FuzzedDataProvider) -> bytes:
    """An InitRequest frame with fuzzed options: names, counts, type numbers, values."""
    init = pb.InitRequest()
    for _ in range(provider.ConsumeIntInRange(0, 4)):
        option = init.options.add(name=provider.PickValueInList(OPTION_NAMES))
        for _ in range(provider.ConsumeIntInRange(0, 3)):
            value = option.values.add()
            value.type = provider.ConsumeIntInRange(-(2**31), 2**31 - 1)
            member = provider.PickValueInList(VALUE_MEMBERS)
            if member == "boolValue":
                value.boolValue = provider.ConsumeBool()
            elif member in ("intValue", "durationValue"):
                setattr(value, member, provider.ConsumeIntInRange(-(2**63), 2**63 - 1))
            elif member == "doubleValue":
                value.doubleValue = provider.ConsumeRegularFloat()
            elif member == "stringValue":
                value.stringValue = provider.ConsumeUnicodeNoSurrogates(8)
    return encode_frame(pb.Request(init=init).SerializeToString())


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    mode = provider.ConsumeIntInRange(0, 2)
    structured = mode == 1
    factory = provider.PickValueInList([Echo, BlockingEcho])
    max_frame_size = provider.PickValueInList([64, 300, 512, 1 << 20])
    cuts = [provider.ConsumeIntInRange(0, 4096) for _ in range(provider.ConsumeIntInRange(0, 8))]
    if structured:
        steps = session_from(provider)
        tail = provider.PickValueInList(list(TAILS))
        tail_arg = provider.ConsumeIntInRange(0, 1000)
        if tail == "at_max" and max_frame_size == 1 << 20:
            max_frame_size = 512  # keep inputs quick
        stream = session_stream(steps, tail, tail_arg, max_frame_size)
        outcome = asyncio.run(
            drive_agent(factory(), cut(stream, cuts), max_frame_size=max_frame_size)
        )
        info = describe(factory)
        check_session(outcome, expected_session(steps, tail, tail_arg, max_frame_size, info))
    elif mode == 2:
        # Init with hostile options, then whatever bytes follow.
        stream = init_from(provider) + provider.ConsumeBytes(provider.remaining_bytes())
        outcome = asyncio.run(drive_agent(factory(), cut(stream, cuts), max_frame_size=1 << 20))
        check_outcome(outcome)
        assert outcome.responses, outcome
        assert outcome.responses[0].HasField("init"), outcome
    else:
        stream = provider.ConsumeBytes(provider.remaining_bytes())
        outcome = asyncio.run(
            drive_agent(factory(), cut(stream, cuts), max_frame_size=max_frame_size)
        )
        check_outcome(outcome)


def main() -> None:
    # Every hostile connection logs a warning: too much noise at thousands a second.
    logging.getLogger("aioudf").setLevel(logging.CRITICAL)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
