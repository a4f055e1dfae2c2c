"""The ``aioudf`` command line: flags in, a call to run()/serve() out.

    aioudf run   mymod:MyHandler                       # process UDF
    aioudf serve mymod:MyHandler --socket /run/udf.sock # socket UDF
    aioudf replay mymod:MyHandler data.srpl -O size=10  # replay data through it

A handler is named ``module:Class`` (module importable from the current
directory or the Python path) or ``path/to/file.py:Class``.

:func:`main` gives a single UDF script the same flags, so an example ends with
``aioudf.main(MyHandler)``: without ``--socket`` it is a process UDF (what
Kapacitor's ``prog``/``args`` run), with ``--socket PATH`` a socket server.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import replay_cli
from ._version import __version__
from .activation import activated_socket
from .agent import DEFAULT_MAX_BACKLOG, DEFAULT_MAX_OUTPUT, DEFAULT_STOP_TIMEOUT
from .errors import AioudfError, HandlerLoadError
from .framing import DEFAULT_MAX_FRAME_SIZE
from .handler import BaseHandler
from .handover import control_path
from .loader import load_handler
from .logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from .loops import LOOP_CHOICES, exit_past_stuck_threads, run_async
from .metrics import Metrics, parse_address, shared_dir, use_multiprocess_dir
from .process import refuse_to_start, run_stdio
from .server import DEFAULT_GRACE, DEFAULT_SOCKET_MODE, TAKEOVER_ENV, serve
from .stdio import check_stdio
from .watchdog import DEFAULT_WARN_BLOCKED

__all__ = ["load_handler", "main", "cli"]

logger = logging.getLogger("aioudf")


def _mode(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal file mode: {text!r}") from None


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def _workers(text: str) -> int:
    from .supervisor import worker_count

    try:
        return worker_count(text)
    except AioudfError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--workers ")) from None


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=LOOP_CHOICES,
        default="auto",
        help="event loop: uvloop if installed (auto), or force one (default: auto)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=LOG_LEVELS,
        help="log level on stderr (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="logfmt",
        choices=LOG_FORMATS,
        help="one line per event as logfmt (Kapacitor's own log format) or json, or "
        "multi-line text for a terminal (default: logfmt)",
    )
    parser.add_argument(
        "--max-frame-size",
        type=int,
        default=DEFAULT_MAX_FRAME_SIZE,
        metavar="BYTES",
        help="largest request accepted (default: %(default)s)",
    )
    parser.add_argument(
        "--max-backlog",
        type=int,
        default=DEFAULT_MAX_BACKLOG,
        metavar="N",
        help="requests read ahead of the handler before reading pauses (default: %(default)s)",
    )
    parser.add_argument(
        "--max-output",
        type=int,
        default=DEFAULT_MAX_OUTPUT,
        metavar="BYTES",
        help="bytes of responses queued before emit() waits (default: %(default)s)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT,
        metavar="SECONDS",
        help="time Handler.stop() may take (default: %(default)s)",
    )
    parser.add_argument(
        "--warn-blocked",
        type=_non_negative_seconds,
        default=DEFAULT_WARN_BLOCKED,
        metavar="SECONDS",
        help="log a warning naming the code that blocks the event loop for longer than "
        "this (the cause of missed keepalives); 0 disables (default: %(default)s)",
    )


def _add_socket(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--socket",
        required=required,
        metavar="PATH",
        help="serve as a socket UDF on this unix socket path",
    )
    parser.add_argument(
        "--mode",
        type=_mode,
        default=DEFAULT_SOCKET_MODE,
        metavar="OCTAL",
        help="socket file permissions (default: 660)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes serving the socket, under a supervisor that replaces any "
        "that dies; 'auto': one per usable core (default: 1, a single process)",
    )
    parser.add_argument(
        "--takeover",
        action="store_true",
        help="take the socket and its live connections over from the server running on it "
        "(starts afresh if none runs); without it, a live socket is refused",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="time open connections get to end by themselves at shutdown, before the "
        "server ends them (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics",
        type=_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics for every worker, "
        "counted on across reloads in PATH.metrics/ (socket UDFs; needs the "
        "aioudf[metrics] extra)",
    )


def _address(text: str) -> str:
    try:
        parse_address(text)
    except AioudfError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _agent_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_frame_size": args.max_frame_size,
        "max_backlog": args.max_backlog,
        "max_output": args.max_output,
        "stop_timeout": args.stop_timeout,
    }


def _execute(
    load: Callable[[], Callable[[], BaseHandler]], args: argparse.Namespace, prog: str
) -> int:
    """Run the process UDF or the socket server the flags describe.

    ``load()`` gives the handler factory; a supervisor never calls it.
    ``prog`` starts the error lines (``aioudf run``, a script's name).
    """
    configure_logging(args.log_level, args.log_format)
    if getattr(args, "socket", None):
        # (Imported here: a process UDF starts without the supervisor's modules.)
        from .supervisor import WORKER_ENV, Supervisor, run_worker

        worker = os.environ.pop(WORKER_ENV, None)
        if args.metrics:
            _share_metrics(args, worker is not None)
        if worker is not None:  # started by a supervisor
            run_async(
                run_worker(
                    load(),
                    args.socket,
                    worker,
                    grace=args.grace,
                    warn_blocked=args.warn_blocked,
                    # Recorded into the shared directory; the supervisor serves them.
                    metrics=Metrics() if args.metrics else None,
                    **_agent_options(args),
                ),
                args.loop,
            )
            exit_past_stuck_threads(0)
            return 0
        if args.workers > 1:
            supervisor = Supervisor(
                args.socket,
                args.workers,
                mode=args.mode,
                grace=args.grace,
                sock=activated_socket(args.socket),
                takeover=args.takeover,
                metrics=args.metrics,
            )
            status: int = run_async(supervisor.run(), args.loop)
            return status
        factory = load()
        coroutine: Any = serve(
            factory,
            args.socket,
            mode=args.mode,
            grace=args.grace,
            warn_blocked=args.warn_blocked,
            sock=activated_socket(args.socket),
            takeover=args.takeover,
            metrics=args.metrics,
            **_agent_options(args),
        )
        run_async(coroutine, args.loop)
        exit_past_stuck_threads(0)
        return 0
    if getattr(args, "metrics", None):
        raise AioudfError(
            "--metrics needs --socket: a process UDF serves no metrics (one process per "
            "task; see docs/observability.md)"
        )
    check_stdio()
    try:
        factory = load()
    except HandlerLoadError as exc:
        # Kapacitor is told too: its start-up error names the cause.
        _report(exc, prog)
        return refuse_to_start(str(exc), loop=args.loop)
    status = run_async(
        run_stdio(factory, warn_blocked=args.warn_blocked, **_agent_options(args)), args.loop
    )
    exit_past_stuck_threads(status)
    return status


def _share_metrics(args: argparse.Namespace, worker: bool) -> None:
    """Record metrics in the directory every process serving this socket shares.

    So that one endpoint covers a supervisor's workers, and counters carry
    on in the process that takes over (a SIGHUP reload, ``--takeover``).
    Its files are kept when this process continues another's counts: as a
    worker, a reload's new process, or a ``--takeover`` of a live server.
    """
    continuing = (
        worker
        or os.environ.get(TAKEOVER_ENV) == "1"
        or (args.takeover and os.path.exists(control_path(args.socket)))
    )
    use_multiprocess_dir(shared_dir(args.socket), fresh=not continuing)


def _guarded(action: Callable[[], int], prog: str) -> int:
    """Run ``action``; an error of ours is one line, ``PROG: error: ...``, status 2.

    ``prog`` is what argparse prints for usage errors (``aioudf run``,
    ``aioudf replay``, a script's name), so every error reads alike.
    """
    try:
        return action()
    except AioudfError as exc:
        _report(exc, prog)
        return 2
    except KeyboardInterrupt:
        return 130


def _report(exc: AioudfError, prog: str) -> None:
    """``PROG: error: ...`` on stderr; for a load error, its traceback too, where it helps.

    The traceback (cut to the user's frames) is one log record, in the
    ``--log-format`` chosen: one line in logfmt or json (one entry in
    Kapacitor's log), the usual lines in text.
    """
    print(f"{prog}: error: {exc}", file=sys.stderr)
    if isinstance(exc, HandlerLoadError) and exc.error is not None:
        logger.error("where the error above was raised", exc_info=exc.error)


def cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aioudf`` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="aioudf", description="Run asyncio Kapacitor UDFs.")
    parser.add_argument("--version", action="version", version=f"aioudf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_parser = commands.add_parser(
        "run", help="run a process UDF on stdin/stdout (Kapacitor's prog/args)"
    )
    run_parser.add_argument("handler", metavar="MODULE:CLASS", help="the Handler to run")
    _add_common(run_parser)

    serve_parser = commands.add_parser("serve", help="serve a socket UDF on a unix socket")
    serve_parser.add_argument("handler", metavar="MODULE:CLASS", help="the Handler to serve")
    _add_socket(serve_parser, required=True)
    _add_common(serve_parser)

    replay_parser = replay_cli.add_parser(commands)  # aioudf replay: see aioudf.replay
    subparsers = {"run": run_parser, "serve": serve_parser, "replay": replay_parser}

    args, extra = parser.parse_known_args(argv)
    subparser = subparsers[args.command]
    if extra:
        if args.command == "replay" and not any(e.startswith("-") for e in extra):
            # inputs after the options: aioudf replay H --socket S in.lp
            args.arguments += extra
        else:
            subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "replay":
        return _guarded(lambda: replay_cli.run(args), subparser.prog)
    return _guarded(
        lambda: _execute(lambda: load_handler(args.handler), args, subparser.prog), subparser.prog
    )


def main(handler_factory: Callable[[], BaseHandler], argv: Sequence[str] | None = None) -> None:
    """Command line of a single-UDF script: process UDF, or socket with ``--socket``.

    Put ``aioudf.main(MyHandler)`` under ``if __name__ == "__main__":``.
    Exits with the UDF's status.
    """
    name = getattr(handler_factory, "__qualname__", "udf")
    parser = argparse.ArgumentParser(
        prog=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else name,
        description=((handler_factory.__doc__ or "").strip().splitlines() or [f"The {name} UDF."])[
            0
        ]
        + " Without --socket, runs as a process UDF on stdin/stdout.",
    )
    _add_socket(parser, required=False)
    _add_common(parser)
    args = parser.parse_args(argv)
    raise SystemExit(
        _guarded(lambda: _execute(lambda: handler_factory, args, parser.prog), parser.prog)
    )
