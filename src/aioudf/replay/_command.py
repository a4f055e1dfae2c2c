"""``aioudf replay`` from parsed flags: the target, the inputs, the output, the exit status."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import sys
from collections.abc import Sequence
from typing import TextIO

import anyio

from ..errors import AioudfError, LineProtocolError, ReplayError, UDFUnreachable
from ..runtime._loader import load_handler
from ..runtime._logs import configure_logging
from ..runtime._loops import run_async
from ..runtime._watchdog import DEFAULT_WARN_BLOCKED, LoopWatchdog
from ..testing.client import Kapacitor, UDFError
from ..testing.transports import Command, InProcess, Socket, Target
from ._engine import replay
from ._grouping import Grouping
from ._inputs import Input, open_input
from ._output import Output, Progress, ReplayStats

__all__ = ["run"]


class _StderrLines:
    """Writes lines to stderr without tearing the progress bar."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.progress: Progress | None = None

    def __call__(self, text: str) -> None:
        if self.progress is not None:
            self.progress.clear()
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text + "\n")
            self.stream.flush()


def _target(args: argparse.Namespace, stderr_lines: _StderrLines) -> tuple[Target, list[str]]:
    """The UDF the flags name, and the remaining positional arguments (inputs)."""
    positional = list(args.arguments)
    if args.socket and args.cmd:
        raise ReplayError("give one UDF: --socket or --cmd, not both")
    if (args.socket or args.cmd) and positional and _names_a_handler(positional[0]):
        flag = f"--socket {args.socket}" if args.socket else f"--cmd {args.cmd!r}"
        raise ReplayError(
            f"give one UDF: the handler {positional[0]} or {flag}, not both "
            "(with --socket or --cmd, every argument is an input)"
        )
    if args.socket:
        return Socket(args.socket), positional
    if args.cmd:
        argv = shlex.split(args.cmd)
        if not argv:
            raise ReplayError("--cmd is empty")
        return Command(argv, on_stderr=lambda line: stderr_lines(f"[udf] {line}")), positional
    if not positional or not _names_a_handler(positional[0]):
        raise ReplayError(
            "name the UDF: MODULE:CLASS (or FILE.py:CLASS) as the first argument, "
            "--socket PATH, or --cmd COMMAND"
        )
    return InProcess(load_handler(positional[0])), positional[1:]


# aioudf's Init refusal names the TICKscript call ("add .field('text') to the
# UDF call"); on this command line that call is written as a flag.
_ADD_CALL = re.compile(r"add \.(\w+)\(([^()]*)\) to the UDF call")


def _as_flags(text: str) -> str:
    """A refusal's TICKscript advice, as replay's flags: ``add -O field=text``."""

    def flag(match: re.Match[str]) -> str:
        values = ",".join(v.strip().strip("'") for v in match.group(2).split(","))
        return f"add -O {match.group(1)}={values}" if values else f"add -O {match.group(1)}"

    return _ADD_CALL.sub(flag, text)


def _names_a_handler(argument: str) -> bool:
    """``module:Class`` or ``file.py:Class``, not an input file."""
    return ":" in argument and not os.path.exists(argument)


def run(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    """Execute ``aioudf replay`` for parsed arguments; returns the exit status."""
    configure_logging(args.log_level)
    stderr = sys.stderr
    stderr_lines = _StderrLines(stderr)
    target, paths = _target(args, stderr_lines)
    stats = ReplayStats()
    invalid = 0

    def on_invalid(error: LineProtocolError) -> None:
        nonlocal invalid
        invalid += 1
        stderr_lines(f"aioudf replay: skipped: {error}")

    inputs = [
        open_input(
            path,
            input_format=args.input_format,
            precision=args.precision,
            on_error=on_invalid if args.skip_invalid else None,
        )
        for path in (paths or ["-"])
    ]
    if "-" in (paths or ["-"]) and _isatty(sys.stdin):
        # Otherwise a user who forgot the input file sees nothing happen.
        stderr_lines(
            "aioudf replay: reading line protocol from stdin (the terminal); "
            "end it with Ctrl-D, or give an input file"
        )
    out_stream: TextIO
    with contextlib.ExitStack() as stack:
        if args.output:
            out_stream = stack.enter_context(open(args.output, "w", encoding="utf-8"))
        else:
            out_stream = stdout or sys.stdout
        output = Output(out_stream, stats, args.format, args.precision)
        show = args.progress == "always" or (
            args.progress == "auto" and not args.quiet and stderr.isatty()
        )
        progress = Progress(stderr, stats) if show else None
        if progress is not None:
            stderr_lines.progress = progress
            if _same_terminal(out_stream, stderr):
                output.before_write = progress.clear
        error: BaseException | None = None
        kapacitor = Kapacitor(target, timeout=args.timeout or None)
        try:
            run_async(
                _run_with_progress(
                    kapacitor,
                    inputs,
                    args=args,
                    grouping=Grouping.from_args(args.group_by, by_name=args.by_measurement),
                    output=output,
                    stats=stats,
                    progress=progress,
                    # A handler run in process shares this loop: name what
                    # blocks it, as `aioudf run` does for a process UDF.
                    warn_blocked=DEFAULT_WARN_BLOCKED if isinstance(target, InProcess) else 0,
                ),
                "auto",
            )
        except (AioudfError, OSError) as exc:
            error = exc
        finally:
            output.flush()
            if progress is not None:
                progress.clear()
        if output.broken:
            # The reader went away (| head): not an error of ours.
            _silence_stdout()
            return 0
        udf_failed = isinstance(error, UDFError) and not isinstance(error, UDFUnreachable)
        started = stats.points_in or stats.points_out or error is None
        if not args.quiet and started:
            # "897 points in, 0 points out" alone reads like a UDF that kept quiet.
            failed = "the UDF failed: " if udf_failed else ""
            print(f"aioudf replay: {failed}{stats.summary()}", file=stderr)
        if invalid:
            print(f"aioudf replay: {invalid:,} invalid line(s) skipped", file=stderr)
        if error is not None:
            message = str(error)
            if isinstance(error, UDFError) and udf_failed:
                # A process UDF's stderr was shown as it came: do not repeat it.
                text = error.text if isinstance(target, Command) else str(error)
                message = f"the UDF failed: {_as_flags(text)}"
            print(f"aioudf replay: error: {message}", file=stderr)
            return 2 if isinstance(error, ReplayError) else 1
    return 0


async def _run_with_progress(
    kapacitor: Kapacitor,
    inputs: Sequence[Input],
    *,
    args: argparse.Namespace,
    grouping: Grouping,
    output: Output,
    stats: ReplayStats,
    progress: Progress | None,
    warn_blocked: float,
) -> None:
    failure: Exception | None = None
    with LoopWatchdog(warn_blocked) if warn_blocked else contextlib.nullcontext():
        async with anyio.create_task_group() as tasks:  # the progress line's painter
            if progress is not None:
                tasks.start_soon(progress.run, name="aioudf replay progress")
            with anyio.CancelScope() as replaying:
                # The reader of the output went away (| head): stop at once, quietly.
                output.on_broken = replaying.cancel
                try:
                    await replay(
                        kapacitor,
                        inputs,
                        options=args.options,
                        grouping=grouping,
                        output=output,
                        stats=stats,
                        progress=progress,
                        task_id=args.task_id,
                        node_id=args.node_id,
                    )
                except Exception as exc:  # raised below, outside the task group's wrapping
                    failure = exc
            tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure


def _isatty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


def _same_terminal(a: TextIO, b: TextIO) -> bool:
    try:
        return a.isatty() and b.isatty() and os.ttyname(a.fileno()) == os.ttyname(b.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; the pipe is gone, so point it at
    # /dev/null instead of printing a BrokenPipeError.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
