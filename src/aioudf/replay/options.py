"""Options written as on a TICKscript line, typed by the UDF's Info.

``--option size=10`` is ``.size(10)``: see :func:`parse_option_args`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..messages import InfoResponse, Option, ValueType
from ..testing.client import encode_options, signature

__all__ = ["describe_options", "parse_duration", "parse_option_args"]

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
    """Nanoseconds of a TICKscript duration literal: ``10s``, ``1m30s``, ``100ms``, ``2d``."""
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


def _convert(name: str, position: int, text: str, quoted: bool, vtype: ValueType) -> Any:
    where = f"option {name!r}" + (f" value {position}" if position else "")
    if vtype is ValueType.STRING:
        return text
    if quoted:
        raise ValueError(f"{where} must be {vtype.name}, got the string '{text}'")
    try:
        if vtype is ValueType.INT:
            return int(text, 10)
        if vtype is ValueType.DOUBLE:
            return float(text)
        if vtype is ValueType.BOOL:
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            raise ValueError(f"not TRUE or FALSE: {text!r}")
        return parse_duration(text)
    except ValueError as exc:
        example = {
            ValueType.INT: "10",
            ValueType.DOUBLE: "1.5",
            ValueType.BOOL: "TRUE",
            ValueType.DURATION: "10s",
        }[vtype]
        raise ValueError(f"{where} must be {vtype.name} (like {example}): {exc}") from None


def parse_option_args(args: Sequence[str], info: InfoResponse) -> list[Option]:
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
            raise ValueError(
                f"option {name!r} takes {len(declared)} value(s): "
                f"{signature(name, declared)}, e.g. --option {name}={_example(declared)}"
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
        values = tuple(
            _convert(name, position + 1 if len(declared) > 1 else 0, text, quoted, vtype)
            for position, ((text, quoted), vtype) in enumerate(zip(parts, declared, strict=True))
        )
        calls.setdefault(name, []).append(values)
    try:
        return encode_options({name: list(values) for name, values in calls.items()}, info)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _example(types: Sequence[ValueType]) -> str:
    examples = {
        ValueType.BOOL: "TRUE",
        ValueType.INT: "10",
        ValueType.DOUBLE: "1.5",
        ValueType.STRING: "text",
        ValueType.DURATION: "10s",
    }
    return ",".join(examples[t] for t in types)


def describe_options(info: InfoResponse) -> str:
    """The UDF's options as TICKscript methods: ``.field(STRING) .size(INT)``."""
    methods = [
        signature(name, [ValueType(t) for t in info.options[name].valueTypes])
        for name in sorted(info.options)
    ]
    return " ".join(methods) or "no options"
