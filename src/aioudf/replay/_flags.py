"""The ``aioudf replay`` command line: its flags, and the call into :mod:`aioudf.replay`.

Kept apart from the replay engine so that building the ``aioudf`` parser
(which every process UDF started with ``aioudf run`` does) imports nothing
but argparse; the engine is imported when ``replay`` actually runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def _log_level(text: str) -> str:
    """``--log-level`` in any case, as ``aioudf run`` and ``serve`` take it."""
    from ..runtime._logs import log_level  # (only once replay's own flags are parsed)

    try:
        return log_level(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


__all__ = ["INPUT_FORMATS", "add_parser", "run"]

#: Input formats by name (``--input-format``); auto picks one by file extension.
INPUT_FORMATS = ("auto", "lp", "srpl", "brpl")


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand to the ``aioudf`` parser's subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "replay",
        help="replay recordings or line protocol through a UDF, printing what it emits",
        description=(
            "Replay data through a UDF as one Kapacitor task: Info, Init with the options, "
            "the data, stop. Prints what the UDF emits on stdout; progress and a summary "
            "go to stderr."
        ),
        usage=(
            "aioudf replay (MODULE:CLASS | --socket PATH | --cmd COMMAND) [INPUT ...] "
            "[--option NAME=VALUE[,VALUE...] ...] [--group-by TAG[,TAG...]] [options]"
        ),
        epilog=(
            "INPUT is a stream recording (.srpl), a batch recording (.brpl) or line protocol "
            "(any other file, .gz too); without INPUT or with '-', line protocol is read from "
            "stdin. Options are written as on a TICKscript line and typed by the UDF's Info: "
            "--option field=usage_idle --option size=10 (.field('usage_idle').size(10)); "
            'several values are separated by commas: --option "field=mirrored,1.0" '
            "(.field('mirrored', 1.0)); quote strings holding commas in single quotes: "
            "--option \"tag='a,b'\"; numbers and durations as in TICKscript (1.0 for a DOUBLE, "
            "one number and a unit for a duration): --option period=90s; an "
            "option without values: --option NAME; repeat --option to call a method again."
        ),
    )
    parser.add_argument(
        "arguments",
        nargs="*",
        metavar="[MODULE:CLASS] INPUT",
        help="the handler to run in process (unless --socket or --cmd is given), then inputs",
    )
    udf = parser.add_argument_group("the UDF (one of)")
    udf.add_argument("--socket", metavar="PATH", help="a socket UDF serving on this unix socket")
    udf.add_argument(
        "--cmd",
        metavar="COMMAND",
        help="a process UDF: the command line to spawn, e.g. 'python -u udf.py'",
    )
    task = parser.add_argument_group("the task")
    task.add_argument(
        "-O",
        "--option",
        dest="options",
        action="append",
        default=[],
        metavar="NAME=VALUE[,VALUE...]",
        help="a UDF option as on the TICKscript line; repeat for more",
    )
    task.add_argument(
        "-g",
        "--group-by",
        dest="group_by",
        action="append",
        default=[],
        metavar="TAG[,TAG...]",
        help="group the data by these tags, as |from().groupBy(...) does; repeat or "
        "separate with commas; '*' groups by all tags",
    )
    task.add_argument(
        "--by-measurement",
        action="store_true",
        help="group by measurement too, as .groupByMeasurement() does",
    )
    task.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the UDF timeout: keepalives every half of it; 0 disables (default: 10)",
    )
    task.add_argument("--task-id", default="replay", help="taskID sent at Init")
    task.add_argument("--node-id", default="udf1", help="nodeID sent at Init")
    data = parser.add_argument_group("input and output")
    data.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="lp (line protocol), srpl or brpl; auto: by file extension (default)",
    )
    data.add_argument(
        "--precision",
        choices=("ns", "us", "ms", "s", "m", "h"),
        default="ns",
        help="unit of line-protocol timestamps, in and out (default: ns)",
    )
    data.add_argument(
        "--skip-invalid",
        action="store_true",
        help="report invalid lines on stderr and go on, instead of stopping at the first",
    )
    data.add_argument(
        "-f",
        "--format",
        choices=("lp", "json"),
        default="lp",
        help="output: line protocol (default) or JSON lines",
    )
    data.add_argument(
        "-o", "--output", metavar="FILE", help="write the output to FILE instead of stdout"
    )
    data.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr: auto shows it on a terminal for inputs that take a while",
    )
    data.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    data.add_argument(
        "--log-level",
        default="WARNING",
        type=_log_level,
        metavar="LEVEL",
        help="log level of an in-process handler: debug, info, warning or error, in any case "
        "(default: WARNING)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Execute ``aioudf replay`` for arguments parsed by :func:`add_parser`'s parser."""
    from ._command import run as run_replay

    return run_replay(args)
