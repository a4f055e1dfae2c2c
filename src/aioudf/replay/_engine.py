"""The replay itself: one task driven through :class:`aioudf.testing.Kapacitor`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from ..errors import AioudfError, InitFailed, LineProtocolError, RecordingError, ReplayError
from ..formats._points import Batch, DataPoint
from ..testing.client import Emitted, Kapacitor
from ..wire._messages import EdgeType, Option
from ..wire._values import parse_option_args
from ._grouping import Grouping
from ._inputs import Input
from ._output import Progress, ReplayStats

__all__ = ["replay"]

#: Points sent to the UDF per write.
_CHUNK_POINTS = 500
#: Batches sent to the UDF per write.
_CHUNK_BATCHES = 8


#: What a program that echoes its input (``--cmd cat``) looks like from here:
#: Kapacitor's requests read back as responses, an empty Info and an Init
#: "refused" with the task id that was sent.
_NOT_A_UDF = (
    "the UDF's Info is empty: is it a UDF at all? A program that sends back what "
    "it reads (as cat does) looks like this"
)


@contextlib.asynccontextmanager
async def _echo_explained(task_id: str) -> AsyncIterator[None]:
    """Turn the Init failure of a program that echoes its input into what it is."""
    try:
        yield
    except InitFailed as exc:
        if exc.text != task_id:
            raise
        raise ReplayError(
            f"the UDF answered Init with the task id it was sent ({task_id!r}): it sends "
            "back what it reads (as cat does), it is not a UDF"
        ) from None


async def replay(
    kapacitor: Kapacitor,
    inputs: Sequence[Input],
    *,
    options: Sequence[str] | Iterable[Option] = (),
    grouping: Grouping | None = None,
    output: Callable[[Emitted], None],
    stats: ReplayStats | None = None,
    progress: Progress | None = None,
    task_id: str = "replay",
    node_id: str = "udf1",
) -> ReplayStats:
    """Replay ``inputs`` through the UDF as one task; emitted items go to ``output``.

    ``options`` are ``NAME=VALUE`` strings (see :func:`parse_option_args`) or
    Option messages. An input error (``LineProtocolError``,
    ``RecordingError``) is raised after the task has been stopped cleanly, so
    the UDF's output for everything before the error has reached ``output``.
    A UDF failure raises :class:`~aioudf.testing.UDFError`.
    """
    stats = stats if stats is not None else ReplayStats()
    grouping = grouping or Grouping()
    info = await kapacitor.info()
    wants = EdgeType(info.wants)
    for source in inputs:
        if source.kind is not wants:
            if wants is EdgeType.BATCH:
                raise ReplayError(
                    f"the UDF wants batches, and {source.label} holds a stream: "
                    "replay a batch recording (.brpl)"
                )
            raise ReplayError(
                f"the UDF wants a stream, and {source.label} is a batch recording: "
                "replay a stream recording (.srpl) or line protocol"
            )
    option_list = list(options)
    if all(isinstance(o, str) for o in option_list):
        try:
            messages = parse_option_args([str(o) for o in option_list], info)
        except ValueError as exc:
            if info.ByteSize() == 0:  # not even an edge type or an option declared
                raise ReplayError(f"{exc}: {_NOT_A_UDF}") from None
            raise ReplayError(str(exc)) from None
    else:
        messages = [o for o in option_list if isinstance(o, Option)]
    started = time.monotonic()
    input_error: AioudfError | None = None
    if progress is not None:
        progress.inputs = len(inputs)
    try:
        async with (
            _echo_explained(task_id),
            kapacitor.task(
                messages,
                task_id=task_id,
                node_id=node_id,
                on_output=output,
                on_message=getattr(output, "message", None),
                on_points=getattr(output, "points", None),
            ) as task,
        ):
            for number, source in enumerate(inputs, start=1):
                if progress is not None:
                    progress.current, progress.input_number = source, number
                chunk = _CHUNK_BATCHES if source.kind is EdgeType.BATCH else _CHUNK_POINTS
                buffer: list[DataPoint | Batch] = []
                frames = source.frames(grouping, _CHUNK_POINTS)
                if frames is not None:
                    try:
                        for data, count in frames:
                            stats.points_in += count
                            await task.send_frames(data)
                            # Let the UDF's output be read as it comes: a
                            # drain that does not wait does not yield, and a
                            # UDF whose output is not read stops reading.
                            await asyncio.sleep(0)
                    except (LineProtocolError, RecordingError) as exc:
                        input_error = exc
                        break
                    continue
                try:
                    for item in source:
                        if isinstance(item, Batch):
                            if grouping.active:
                                buffer.extend(grouping.regroup(item))
                            else:
                                buffer.append(item)
                            stats.batches_in += 1
                            stats.points_in += len(item.points)
                        else:
                            buffer.append(grouping.apply(item) if grouping.active else item)
                            stats.points_in += 1
                        if len(buffer) >= chunk:
                            await task.send(*buffer)
                            buffer = []
                            await asyncio.sleep(0)  # the UDF's output read as it comes
                except (LineProtocolError, RecordingError) as exc:
                    input_error = exc
                if buffer:
                    await task.send(*buffer)
                if input_error is not None:
                    break
            if progress is not None:
                progress.reading = False
            if kapacitor.timeout and input_error is None:
                # A live task would still be running while the UDF works
                # through the data, its keepalives watched; a replay stops
                # right after sending. A snapshot, answered only once every
                # point before it is handled, keeps the keepalive clock on
                # the UDF until then: a handler that blocks its loop past the
                # timeout fails here as it would under Kapacitor.
                await task.snapshot()
            await task.stop()
    finally:
        stats.elapsed = time.monotonic() - started
    if input_error is not None:
        raise input_error
    return stats
