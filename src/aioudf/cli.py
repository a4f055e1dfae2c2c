"""The ``aioudf`` command line: flags in, a call to run()/serve() out.

    aioudf run   mymod:MyHandler                       # process UDF
    aioudf serve mymod:MyHandler --socket /run/udf.sock # socket UDF
    aioudf replay mymod:MyHandler data.srpl -O size=10  # replay data through it
    aioudf compat outliers.py                          # a script for Kapacitor's agent

A handler is named ``module:Class`` (module importable from the current
directory or the Python path) or ``path/to/file.py:Class``.

:func:`main` gives a single UDF script the same flags, so an example ends with
``aioudf.main(MyHandler)``: without ``--socket`` it is a process UDF (what
Kapacitor's ``prog``/``args`` run), with ``--socket PATH`` a socket server.

Why one module of this size: every subcommand shares the one table of
settings flags (``_setting``: flag, environment variable, Config field) and
the one way of turning a bad flag into one line and exit status 2; the
replay's flags are ``replay/_flags.py``, which the engine does not need.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import stat
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ._version import __version__
from .config import DEFAULT_WARN_BLOCKED, Config
from .errors import AioudfError, HandlerLoadError
from .replay import _flags as replay_cli
from .runtime._loader import handler_path, load_handler
from .runtime._logs import LOG_FORMATS, configure_logging, log_level
from .runtime._loops import LOOP_CHOICES, exit_past_stuck_threads, run_async
from .serving._activation import activated_socket
from .serving._metrics import Metrics, parse_address
from .serving._process import refuse_to_start, run_stdio
from .serving._server import serve, share_metrics
from .serving._stdio import check_stdio
from .toolkit._handler import BaseHandler

__all__ = ["load_handler", "main", "cli"]

logger = logging.getLogger("aioudf")

T = TypeVar("T")


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


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _workers(text: str) -> int:
    from .serving._supervisor import worker_count

    try:
        return worker_count(text)
    except AioudfError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--workers ")) from None


def _level(text: str) -> str:
    try:
        return log_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {text!r} (choose from {', '.join(choices)})"
            )
        return text

    return check


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _switch(text: str) -> bool:
    """An on/off environment variable (``1``/``0``, ``true``/``false``, ``yes``/``no``)."""
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError("expected 1 or 0 (true/false, yes/no, on/off)")


def _address(text: str) -> str:
    try:
        parse_address(text)
    except AioudfError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _directories(text: str) -> list[str]:
    return [part for part in text.split(os.pathsep) if part]


#: Every flag's environment variable is AIOUDF_ and its name (``--log-level``:
#: ``AIOUDF_LOG_LEVEL``). A flag given on the command line wins.
ENV_PREFIX = "AIOUDF_"


def env_name(flag: str) -> str:
    """The environment variable of ``flag``: ``--max-backlog`` -> ``AIOUDF_MAX_BACKLOG``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _flag(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    default: Any,
    help: str,
    convert: Callable[[str], Any] = str,
    switch: bool = False,
    shown: str | None = None,
    metavar: str | None = None,
    repeated: bool = False,
) -> None:
    """Add ``flag``, also read from its environment variable when not given.

    The parsed value is None when the flag was not given: :func:`_from_env`
    then fills in the variable's value, or ``default``. ``shown`` is the
    default as the help shows it.
    """
    env = env_name(flag)
    shown = str(default) if shown is None else shown
    text = f"{help} (env {env}; default: {shown})"
    if switch:
        parser.add_argument(flag, action="store_true", default=None, help=text)
    elif repeated:
        parser.add_argument(
            flag, action="extend", type=convert, default=None, help=text, metavar=metavar
        )
    else:
        parser.add_argument(flag, type=convert, default=None, help=text, metavar=metavar)
    from_env: list[tuple[str, str, Callable[[str], Any], Any]] = parser.get_default("_from_env")
    if from_env is None:
        from_env = []
        parser.set_defaults(_from_env=from_env)
    dest = flag.lstrip("-").replace("-", "_")
    from_env.append((dest, env, _switch if switch else convert, default))


def _from_env(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fill in each flag not given from its environment variable, else its default.

    A bad value is a usage error naming the variable (exit status 2).
    """
    for dest, env, convert, default in getattr(args, "_from_env", None) or ():
        if getattr(args, dest) is not None:
            continue  # the flag wins
        text = os.environ.get(env)
        if text is None or (text == "" and convert is not _switch):
            setattr(args, dest, default)
            continue
        try:
            setattr(args, dest, convert(text))
        except (argparse.ArgumentTypeError, ValueError) as exc:
            print(f"{parser.prog}: error: {env}={text!r}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


def _add_common(parser: argparse.ArgumentParser) -> None:
    _flag(
        parser,
        "--loop",
        convert=_choice(LOOP_CHOICES),
        default="auto",
        metavar="{" + ",".join(LOOP_CHOICES) + "}",
        help="event loop: uvloop if installed (auto), or force one",
    )
    _flag(
        parser,
        "--log-level",
        convert=_level,
        default="INFO",
        metavar="LEVEL",
        help="log level on stderr: debug, info, warning or error, in any case",
    )
    _flag(
        parser,
        "--log-format",
        convert=_choice(LOG_FORMATS),
        default="logfmt",
        metavar="{" + ",".join(LOG_FORMATS) + "}",
        help="one line per event as logfmt (Kapacitor's own log format) or json, or "
        "multi-line text for a terminal",
    )
    _setting(parser, "max_frame_size", _whole, "BYTES", "largest request accepted")
    _setting(
        parser,
        "max_backlog",
        _whole,
        "N",
        "requests read ahead of the handler before reading pauses",
    )
    _setting(parser, "max_output", _whole, "BYTES", "bytes of responses queued before emit() waits")
    _setting(parser, "read_size", _whole, "BYTES", "bytes asked of the connection per read")
    _setting(parser, "stop_timeout", _seconds, "SECONDS", "time Handler.stop() may take")
    _setting(
        parser,
        "close_timeout",
        _seconds,
        "SECONDS",
        "time the last responses may take to be written when Kapacitor stops reading at close",
    )
    _setting(
        parser,
        "warn_blocked",
        _non_negative_seconds,
        "SECONDS",
        "log a warning naming the code that blocks the event loop for longer than "
        "this (the cause of missed keepalives); 0 disables",
        shown=f"{DEFAULT_WARN_BLOCKED:g}",
    )


#: The flags that set a :class:`~aioudf.config.Config` field (``--max-backlog``:
#: ``max_backlog``); :func:`_config` builds the Config from them.
_SETTINGS: list[str] = []
#: The defaults, as the help shows them (Config owns them).
_DEFAULTS = Config()


def _setting(
    parser: argparse.ArgumentParser,
    name: str,
    convert: Callable[[str], Any],
    metavar: str,
    help: str,
    *,
    shown: str | None = None,
) -> None:
    """Add the flag of the Config field ``name``; its default is the Config's."""
    if name not in _SETTINGS:
        _SETTINGS.append(name)
    default = getattr(_DEFAULTS, name)
    _flag(
        parser,
        "--" + name.replace("_", "-"),
        convert=convert,
        default=None,  # not given: the Config's default
        shown=shown if shown is not None else str(default),
        metavar=metavar,
        help=help,
    )


def _config(args: argparse.Namespace) -> Config:
    """The :class:`~aioudf.config.Config` the flags and AIOUDF_* variables describe, checked."""
    given = {name: value for name in _SETTINGS if (value := getattr(args, name, None)) is not None}
    return Config.from_dict(given)


def _add_socket(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """The socket server's flags; ``required``: ``aioudf serve``, where --socket must be given.

    A script's ``aioudf.main()`` is a process UDF without ``--socket``, so
    there ``AIOUDF_SOCKET`` is not read: an environment set for a service
    must not turn a process UDF Kapacitor starts into a server.
    """
    if required:
        _flag(
            parser,
            "--socket",
            default=None,
            shown="none, required",
            metavar="PATH",
            help="serve as a socket UDF on this unix socket path",
        )
    else:
        parser.add_argument(
            "--socket",
            metavar="PATH",
            help="serve as a socket UDF on this unix socket path (default: a process UDF)",
        )
    _setting(parser, "mode", _mode, "OCTAL", "socket file permissions", shown=f"{_DEFAULTS.mode:o}")
    _setting(
        parser,
        "backlog",
        _whole,
        "N",
        "connections the kernel queues before they are accepted",
    )
    _flag(
        parser,
        "--workers",
        convert=_workers,
        default=1,
        shown="1, a single process",
        metavar="N",
        help="worker processes serving the socket, under a supervisor that replaces any "
        "that dies; 'auto': one per usable core",
    )
    _flag(
        parser,
        "--takeover",
        switch=True,
        default=False,
        shown="off",
        help="take the socket and its live connections over from the server running on it "
        "(starts afresh if none runs); without it, a live socket is refused",
    )
    _setting(
        parser,
        "grace",
        _seconds,
        "SECONDS",
        "time open connections get to end by themselves at shutdown, before the server ends them",
    )
    _flag(
        parser,
        "--metrics",
        convert=_address,
        default=None,
        shown="none",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics for every worker, "
        "counted on across reloads in PATH.metrics/ (needs the aioudf[metrics] extra)",
    )
    _flag(
        parser,
        "--reload",
        switch=True,
        default=False,
        shown="off",
        help="development: reload (as SIGHUP does, tasks carry on) when a .py file under "
        "the handler's directory or a --reload-dir changes (watchfiles if installed, "
        "the aioudf[reload] extra; else polling)",
    )
    _flag(
        parser,
        "--reload-dir",
        convert=_directories,
        default=[],
        shown="the handler's directory",
        repeated=True,
        metavar="DIR",
        help=f"with --reload, watch this directory instead (repeatable; the variable "
        f"takes several, separated by {os.pathsep!r})",
    )


def _execute(
    load: Callable[[], Callable[[], BaseHandler]],
    args: argparse.Namespace,
    prog: str,
    source: Callable[[], str | None] = lambda: None,
) -> int:
    """Run the process UDF or the socket server the flags describe.

    ``load()`` gives the handler factory; a supervisor never calls it.
    ``prog`` starts the error lines (``aioudf run``, a script's name).
    ``source()`` is the handler's file, whose directory ``--reload`` watches.
    """
    config = _config(args)  # a bad setting: one line, before anything starts
    configure_logging(args.log_level, args.log_format)
    if getattr(args, "socket", None):
        # (Imported here: a process UDF starts without the supervisor's modules.)
        from .serving._supervisor import Supervisor
        from .serving._worker import WORKER_ENV, run_worker

        worker = os.environ.pop(WORKER_ENV, None)
        if args.metrics:
            _share_metrics(args, worker is not None)
        if worker is not None:  # started by a supervisor
            # (Its settings are the supervisor's Config, in the description.)
            run_async(
                run_worker(
                    load(),
                    args.socket,
                    worker,
                    # Recorded into the shared directory; the supervisor serves them.
                    metrics=Metrics() if args.metrics else None,
                ),
                args.loop,
            )
            exit_past_stuck_threads(0)
            return 0
        watched = _watched(args, source) if args.reload else None
        if args.workers > 1:
            supervisor = Supervisor(
                args.socket,
                args.workers,
                config=config,
                sock=activated_socket(args.socket),
                takeover=args.takeover,
                metrics=args.metrics,
            )
            status: int = run_async(_reloading(supervisor.run(), watched), args.loop)
            return status
        factory = load()
        coroutine: Any = serve(
            factory,
            args.socket,
            config=config,
            sock=activated_socket(args.socket),
            takeover=args.takeover,
            metrics=args.metrics,
        )
        run_async(_reloading(coroutine, watched), args.loop)
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
    status = run_async(run_stdio(factory, config=config), args.loop)
    exit_past_stuck_threads(status)
    return status


def _watched(args: argparse.Namespace, source: Callable[[], str | None]) -> list[str]:
    """The directories ``--reload`` watches: the ``--reload-dir``s, else the handler's."""
    if args.reload_dir:
        missing = [d for d in args.reload_dir if not os.path.isdir(d)]
        if missing:
            raise AioudfError(f"--reload-dir: no such directory: {missing[0]}")
        return [os.path.abspath(d) for d in args.reload_dir]
    path = source()
    if path is None:
        raise AioudfError(
            "--reload cannot tell which files to watch for this handler: give --reload-dir DIR"
        )
    return [os.path.dirname(os.path.abspath(path))]


def _reloading(main: Coroutine[Any, Any, T], watched: list[str] | None) -> Coroutine[Any, Any, T]:
    """``main``, or ``main`` while ``watched`` directories are watched for --reload."""
    if watched is None:
        return main
    from .serving._reload import with_reload  # (a server without --reload never imports it)

    return with_reload(main, watched)


def _share_metrics(args: argparse.Namespace, worker: bool) -> None:
    """Share metrics with every process serving this socket (see server.share_metrics)."""
    share_metrics(args.socket, worker=worker, takeover=args.takeover)


def _compat(args: argparse.Namespace) -> int:
    """``aioudf compat SCRIPT.py ARGS``: a Kapacitor agent script, served by aioudf."""
    from .compat import Settings, run_script  # (loaded only for compat scripts)

    if args.socket:
        raise AioudfError("--socket: a compat script names its socket itself, in Server(path, ...)")
    settings = Settings(
        loop=args.loop,
        config=_config(args),
        workers=args.workers,
        takeover=args.takeover,
        metrics=args.metrics,
    )
    configure_logging(args.log_level, args.log_format)
    try:
        status = run_script(args.script, args.script_args, settings)
    except HandlerLoadError as exc:
        _report(exc, "aioudf compat")
        if _kapacitor_pipes():  # a process UDF: Kapacitor's start-up error names the cause
            refuse_to_start(str(exc), loop=args.loop)
        return 1
    exit_past_stuck_threads(status)
    return status


def _kapacitor_pipes() -> bool:
    """Whether stdin and stdout are both pipes, as Kapacitor starts a process UDF.

    A compat script that fails before it serves may be a process or a socket
    UDF; only the first is answered on stdin (a server started with stdin
    on a pipe that stays open must exit, not wait for Kapacitor).
    """
    try:
        return all(stat.S_ISFIFO(os.fstat(fd).st_mode) for fd in (0, 1))
    except OSError:
        return False


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
    compat_parser = commands.add_parser(
        "compat", help="run a UDF script written for Kapacitor's Python agent, unchanged"
    )
    compat_parser.add_argument("script", metavar="SCRIPT.py", help="the script, run as __main__")
    compat_parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS...")
    _add_socket(compat_parser, required=False)  # (--socket: the script's Server names it)
    _add_common(compat_parser)
    subparsers = {
        "run": run_parser,
        "serve": serve_parser,
        "replay": replay_parser,
        "compat": compat_parser,
    }

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
    _from_env(args, subparser)
    if args.command == "compat":
        return _guarded(lambda: _compat(args), subparser.prog)
    if args.command == "serve" and not args.socket:
        subparser.error(
            f"the following arguments are required: --socket (or {env_name('--socket')})"
        )
    return _guarded(
        lambda: _execute(
            lambda: load_handler(args.handler),
            args,
            subparser.prog,
            lambda: handler_path(args.handler),
        ),
        subparser.prog,
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
    _from_env(args, parser)
    raise SystemExit(
        _guarded(
            lambda: _execute(
                lambda: handler_factory, args, parser.prog, lambda: _file_of(handler_factory)
            ),
            parser.prog,
        )
    )


def _file_of(factory: object) -> str | None:
    """The source file that defines ``factory`` (for --reload), if it has one."""
    try:
        return inspect.getsourcefile(factory)  # type: ignore[arg-type]
    except TypeError:
        return None
