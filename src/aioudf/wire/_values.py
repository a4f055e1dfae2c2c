"""The one option table: TICKscript literal text <-> typed value <-> ``OptionValue``.

Both sides of the wire type option values through this table, and nowhere
else:

* TICKscript literal text -> typed value: :func:`parse_literal` (``10s``,
  ``TRUE``, ``1.5``, ``'text'``), and :func:`parse_option_args` for whole
  ``NAME=VALUE[,VALUE...]`` arguments (``aioudf replay``, the benchmarks);
* typed value -> ``OptionValue``: :func:`option_value`, and
  :func:`encode_options` for a mapping of Python values (the test kit);
* ``OptionValue`` -> Python value: :func:`python_value` (the UDF at Init,
  through the toolkit's :class:`~aioudf.Option` declarations).

Value types map as BOOL -> bool, INT -> int, DOUBLE -> float, STRING -> str,
DURATION -> datetime.timedelta.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._messages import InfoResponse, OptionValue, ValueType
from ._messages import Option as OptionMessage

__all__ = [
    "describe_options",
    "encode_options",
    "literal_kind",
    "option_value",
    "parse_duration",
    "parse_literal",
    "parse_option_args",
    "python_value",
    "signature",
    "tickscript_duration",
]


_PY_TO_VALUE_TYPE: dict[Any, ValueType] = {
    bool: ValueType.BOOL,
    int: ValueType.INT,
    float: ValueType.DOUBLE,
    str: ValueType.STRING,
    datetime.timedelta: ValueType.DURATION,
}

# Which oneof member of OptionValue carries each value type.
_ONEOF_FIELD = {
    ValueType.BOOL: "boolValue",
    ValueType.INT: "intValue",
    ValueType.DOUBLE: "doubleValue",
    ValueType.STRING: "stringValue",
    ValueType.DURATION: "durationValue",
}

# How TICKscript literals of each type look, for error messages.
_EXAMPLE = {
    ValueType.BOOL: "TRUE",
    ValueType.INT: "10",
    ValueType.DOUBLE: "1.5",
    ValueType.STRING: "'text'",
    ValueType.DURATION: "10s",
}


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "u": 1_000,
    "µ": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|u|µ|ms|s|m|h|d|w)")


def parse_duration(text: str) -> int:
    """Nanoseconds of a duration written as Go writes one: ``10s``, ``1m30s``, ``100ms``, ``2d``.

    Looser than TICKscript, whose literal is one number and one unit (see
    :func:`parse_literal`, which refuses ``1m30s`` as Kapacitor does).
    """
    body = text.strip()
    sign = 1
    if body[:1] in "+-" and body:
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0
    total = 0
    position = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        number, unit = match.groups()
        multiplier = _DURATION_UNITS[unit]
        if "." in number:
            whole, _, fraction = number.partition(".")
            total += int(whole or "0") * multiplier
            total += int(fraction.ljust(18, "0")[:18]) * multiplier // 10**18
        else:
            total += int(number) * multiplier
        position = match.end()
    if not body or position != len(body):
        raise ValueError(
            f"not a duration: {text!r} (write it as in TICKscript: 10s, 1m30s, 100ms, 2h, 1d)"
        )
    return sign * total


# TICKscript's literals, as its lexer reads them (checked against kapacitord):
# ``1`` is an INT and ``1.0``, ``1.`` or ``.5`` a DOUBLE; a duration is one
# whole number and one unit (``90s``: ``1m30s``, ``1.5s`` and ``10ns`` are
# refused); booleans are ``TRUE`` and ``FALSE`` only. No ``+``, no exponent.
_INT_LITERAL = re.compile(r"-?[0-9]+")
_DOUBLE_LITERAL = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+)")
_DURATION_LITERAL = re.compile(r"(-?[0-9]+)(u|µ|ms|s|m|h|d|w)")
_TICKSCRIPT_UNITS = ("w", "d", "h", "m", "s", "ms", "u")
_INT64 = 2**63


def literal_kind(text: str) -> ValueType | None:
    """The type TICKscript reads an unquoted literal as: ``1`` INT, ``1.0`` DOUBLE, ``1s``...

    None for text that is no literal of TICKscript's (a word, ``1e3``, ``1m30s``).
    """
    if _INT_LITERAL.fullmatch(text):
        return ValueType.INT
    if _DOUBLE_LITERAL.fullmatch(text):
        return ValueType.DOUBLE
    if _DURATION_LITERAL.fullmatch(text):
        return ValueType.DURATION
    if text in ("TRUE", "FALSE"):
        return ValueType.BOOL
    return None


def tickscript_duration(nanoseconds: int) -> str:
    """A duration as TICKscript writes it: one number, the largest unit that fits (``90s``)."""
    for unit in _TICKSCRIPT_UNITS:
        size = _DURATION_UNITS[unit]
        if nanoseconds % size == 0:
            return f"{nanoseconds // size}{unit}"
    raise ValueError(f"TICKscript has no duration of {nanoseconds} ns (its smallest unit is 1u)")


def _no_duration(text: str) -> str:
    hint = "one whole number and a unit: u, ms, s, m, h, d, w"
    with contextlib.suppress(ValueError):
        hint += f"; write {tickscript_duration(parse_duration(text))}"
    return f"not a TICKscript duration: {text!r} ({hint})"


def parse_literal(text: str, vtype: ValueType, *, quoted: bool = False) -> Any:
    """The typed value of one TICKscript literal: ``TRUE``, ``10``, ``1.5``, ``text``, ``10s``.

    BOOL is a bool (``TRUE`` or ``FALSE``), INT an int, DOUBLE a float,
    STRING the text itself, DURATION nanoseconds. ``quoted``: the text was
    written between single quotes, which only a STRING may be. Anything
    else is read as TICKscript reads it (see :func:`literal_kind`): ``1`` is
    an INT, which Kapacitor refuses for a DOUBLE (write ``1.0``). Raises
    ValueError saying what was expected.
    """
    if vtype is ValueType.STRING:
        return text
    if quoted:
        raise ValueError(f"must be {vtype.name}, got the string '{text}'")
    kind = literal_kind(text)
    example = _EXAMPLE[vtype]
    if kind is not None and kind is not vtype:
        # TICKscript: "unexpected arg to size, got DOUBLE expected INT"
        raise ValueError(f"must be {vtype.name} (like {example}), got {kind.name} {text}")
    if kind is None:
        if vtype is ValueType.BOOL:
            reason = f"not TRUE or FALSE: {text!r}"
        elif vtype is ValueType.DURATION:
            reason = _no_duration(text)
        else:
            reason = f"not a TICKscript number: {text!r}"
        raise ValueError(f"must be {vtype.name} (like {example}): {reason}")
    if vtype is ValueType.BOOL:
        return text == "TRUE"
    if vtype is ValueType.DOUBLE:
        return float(text)
    if vtype is ValueType.DURATION:
        number, unit = _DURATION_LITERAL.fullmatch(text).groups()  # type: ignore[union-attr]
        return int(number) * _DURATION_UNITS[unit]
    value = int(text, 10)
    if not -_INT64 <= value < _INT64:
        raise ValueError(f"must be {vtype.name}: {text} is out of a 64-bit integer's range")
    return value


def _duration_ns(value: datetime.timedelta) -> int:
    return (value.days * 86_400 + value.seconds) * 10**9 + value.microseconds * 1000


def option_value(value: Any, vtype: ValueType | None = None, *, option: str = "") -> OptionValue:
    """The ``OptionValue`` Kapacitor sends for ``value``, typed ``vtype``.

    Without ``vtype`` the type follows the Python type (bool, int, float,
    str, timedelta). A DOUBLE takes an int too; a DURATION a timedelta or
    nanoseconds. Anything else is refused, as TICKscript refuses it, with a
    TypeError naming ``option``.
    """
    if isinstance(value, OptionValue):
        return value
    if vtype is None:
        for python_type, inferred in _PY_TO_VALUE_TYPE.items():  # bool before int
            if isinstance(value, python_type):
                vtype = inferred
                break
        else:
            raise TypeError(f"option {option!r}: cannot send a {type(value).__name__}")
    out = OptionValue(type=int(vtype))  # type: ignore[arg-type]
    try:
        if vtype is ValueType.BOOL:
            if not isinstance(value, bool):
                raise TypeError
            out.boolValue = value
        elif vtype is ValueType.INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            out.intValue = value
        elif vtype is ValueType.DOUBLE:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            out.doubleValue = float(value)
        elif vtype is ValueType.STRING:
            if not isinstance(value, str):
                raise TypeError
            out.stringValue = value
        else:
            if isinstance(value, datetime.timedelta):
                value = _duration_ns(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            out.durationValue = value
    except TypeError:
        raise TypeError(
            f"invalid {type(value).__name__} value {value!r} for option {option!r}: "
            f"the UDF declares {vtype.name}"
        ) from None
    return out


def python_value(value: OptionValue, vtype: ValueType) -> Any:
    """The Python value a handler reads for an ``OptionValue`` of type ``vtype``."""
    if vtype is ValueType.DURATION:
        return datetime.timedelta(microseconds=value.durationValue / 1000)
    return getattr(value, _ONEOF_FIELD[vtype])


def signature(name: str, types: Sequence[ValueType]) -> str:
    """``.field(STRING, DOUBLE)``: an option as TICKscript shows it."""
    return f".{name}({', '.join(ValueType(t).name for t in types)})"


def describe_options(info: InfoResponse) -> str:
    """The UDF's options as TICKscript methods: ``.field(STRING) .size(INT)``."""
    methods = [
        signature(name, [ValueType(t) for t in info.options[name].valueTypes])
        for name in sorted(info.options)
    ]
    return " ".join(methods) or "no options"


def encode_options(
    options: Mapping[str, Any], info: InfoResponse | None = None
) -> list[OptionMessage]:
    """Turn ``{"field": "x", "size": 10, "pair": ("k", 1.0)}`` into Option messages.

    A tuple is one call with several values; a list is several calls (each a
    value or a tuple); ``True`` calls a flag (an option without values) and
    ``False`` leaves it out; ``None`` leaves any option out. Names ending in ``_`` lose it
    (``as_`` is ``.as()``). With ``info`` (the UDF's InfoResponse), options
    the UDF does not declare and calls with the wrong number of values are
    refused, as TICKscript refuses them, and values are typed as declared (an
    int is sent as a DOUBLE where one is declared). Without it, values are
    typed by their Python type.
    """
    out: list[OptionMessage] = []
    for raw_name, arg in options.items():
        name = raw_name.rstrip("_") or raw_name
        declared: list[ValueType] | None = None
        if info is not None:
            if name not in info.options:
                raise TypeError(
                    f"the UDF has no option {name!r}; it takes: {describe_options(info)}"
                )
            declared = [ValueType(t) for t in info.options[name].valueTypes]
        if arg is None or (arg is False and declared == []):
            continue
        calls = arg if isinstance(arg, list) else [arg]
        for call in calls:
            values: tuple[Any, ...] = call if isinstance(call, tuple) else (call,)
            if values == (True,) and declared == []:
                values = ()  # a flag option: .flag()
            if declared is not None and len(values) != len(declared):
                raise TypeError(
                    f"option {name!r} takes {len(declared)} value(s), "
                    f"{signature(name, declared)}, got {len(values)}: {call!r}"
                )
            message = OptionMessage(name=name)
            for position, value in enumerate(values):
                vtype = declared[position] if declared is not None else None
                message.values.append(option_value(value, vtype, option=name))
            out.append(message)
    return out


def _split_values(text: str) -> list[tuple[str, bool]]:
    """Split ``a,'b,c', d`` at commas outside single quotes: ``[(value, quoted)]``."""
    values: list[tuple[str, bool]] = []
    current: list[str] = []
    quoted = False
    in_quotes = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_quotes:
            if c == "\\" and i + 1 < len(text) and text[i + 1] in "'\\":
                current.append(text[i + 1])
                i += 2
                continue
            if c == "'":
                in_quotes = False
            else:
                current.append(c)
        elif c == "'" and not "".join(current).strip():
            in_quotes = quoted = True
            current = []
        elif c == ",":
            values.append(("".join(current) if quoted else "".join(current).strip(), quoted))
            current, quoted = [], False
        elif quoted and not c.isspace():
            raise ValueError(f"unexpected {c!r} after a quoted string in {text!r}")
        elif not quoted:
            current.append(c)
        i += 1
    if in_quotes:
        raise ValueError(f"unterminated quote in {text!r}")
    values.append(("".join(current) if quoted else "".join(current).strip(), quoted))
    return values


def parse_option_args(args: Sequence[str], info: InfoResponse) -> list[OptionMessage]:
    """``["field=usage_idle", "size=10"]`` as the Option messages of an Init.

    Each argument is ``NAME=VALUE[,VALUE...]`` (or ``NAME`` for an option
    without values), typed by the UDF's ``info``. Raises ValueError with a
    message naming the option and what it takes.
    """
    calls: dict[str, list[tuple[Any, ...]]] = {}
    for arg in args:
        name, has_values, rest = arg.partition("=")
        name = name.strip().lstrip(".")
        if not name:
            raise ValueError(f"--option {arg!r}: expected NAME=VALUE")
        if name not in info.options:
            raise ValueError(f"the UDF has no option {name!r}; it takes: {describe_options(info)}")
        declared = [ValueType(t) for t in info.options[name].valueTypes]
        if not declared:
            if has_values and rest.strip():
                raise ValueError(f"option {name!r} takes no values: write --option {name}")
            calls.setdefault(name, []).append(())
            continue
        if not has_values:
            example = ",".join(_ARG_EXAMPLE[t] for t in declared)
            raise ValueError(
                f"option {name!r} takes {len(declared)} value(s): "
                f"{signature(name, declared)}, e.g. --option {name}={example}"
            )
        try:
            parts = _split_values(rest)
        except ValueError as exc:
            raise ValueError(f"option {name!r}: {exc}") from None
        if len(parts) != len(declared):
            hint = ""
            if len(parts) > len(declared) and ValueType.STRING in declared:
                hint = "; quote a string that contains a comma: 'a,b'"
            raise ValueError(
                f"option {name!r} takes {len(declared)} value(s), {signature(name, declared)}, "
                f"got {len(parts)} in {rest!r}{hint}"
            )
        values = []
        for position, ((text, quoted), vtype) in enumerate(zip(parts, declared, strict=True)):
            where = f" value {position + 1}" if len(declared) > 1 else ""
            kind = None if quoted or vtype is ValueType.STRING else literal_kind(text)
            if kind is not None and kind is not vtype:
                fix = f"; write {text}.0" if (kind, vtype) == _INT_FOR_DOUBLE else ""
                raise ValueError(
                    f"option {name!r}{where}: unexpected arg to {name}, got {kind.name} "
                    f"expected {vtype.name}, as Kapacitor refuses .{name}({text}){fix}"
                )
            try:
                values.append(parse_literal(text, vtype, quoted=quoted))
            except ValueError as exc:
                raise ValueError(f"option {name!r}{where} {exc}") from None
        calls.setdefault(name, []).append(tuple(values))
    try:
        return encode_options({name: list(values) for name, values in calls.items()}, info)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


_INT_FOR_DOUBLE = (ValueType.INT, ValueType.DOUBLE)

# How an option's values are written after --option NAME=, for hints.
_ARG_EXAMPLE = {**_EXAMPLE, ValueType.STRING: "text"}
