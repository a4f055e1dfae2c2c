"""Declarative UDF options: declared once, advertised in Info, validated at Init.

A handler declares each TICKscript method it accepts as a class attribute::

    class MovingAvg(Handler):
        field = Option(str)                         # .field('usage_idle')
        size = Option(int)                          # .size(10)
        as_ = Option(str, name="as", default="avg") # .as('avg'), optional
        extra = Option(str, float, repeated=True)   # .extra('k', 1.0).extra(...)

The InfoResponse lists them with their value types; at Init the values are
checked (unknown option, wrong type, wrong number of values, repeated or
missing option) and converted to Python values that the handler reads as plain
attributes: ``self.size`` is an ``int``. Value types map as BOOL -> bool,
INT -> int, DOUBLE -> float, STRING -> str, DURATION -> datetime.timedelta.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from .errors import OptionError
from .messages import Option as OptionMessage
from .messages import OptionValue, ValueType

__all__ = ["Option", "OptionSpec", "OptionValues", "parse_options"]

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")

_MISSING: Any = object()

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
_FIELD_TO_TYPE = {field: vtype for vtype, field in _ONEOF_FIELD.items()}

# How TICKscript literals of each type look, for error messages.
_EXAMPLE = {
    ValueType.BOOL: "TRUE",
    ValueType.INT: "10",
    ValueType.DOUBLE: "1.5",
    ValueType.STRING: "'text'",
    ValueType.DURATION: "10s",
}


# The Python values a default of each type may be (bool is an int: refused).
_DEFAULT_TYPES: dict[ValueType, tuple[type, ...]] = {
    ValueType.BOOL: (bool,),
    ValueType.INT: (int,),
    ValueType.DOUBLE: (float, int),
    ValueType.STRING: (str,),
    ValueType.DURATION: (datetime.timedelta,),
}


def _check_default(types: tuple[ValueType, ...], default: Any) -> None:
    """Raise TypeError, when the class is defined, for a default of the wrong type."""
    declared = f"Option({', '.join(t.name.lower() for t in types)})"
    if not types:
        if not isinstance(default, bool):
            raise TypeError(f"{declared}: a flag's default is True or False, got {default!r}")
        return
    values = default if len(types) > 1 else (default,)
    if len(types) > 1 and (not isinstance(default, tuple) or len(default) != len(types)):
        raise TypeError(
            f"{declared}: default must be a tuple of {len(types)} values, got {default!r}"
        )
    for vtype, value in zip(types, values, strict=True):
        allowed = _DEFAULT_TYPES[vtype]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise TypeError(
                f"{declared}: default {value!r} does not fit {vtype.name}: give "
                f"{' or '.join(t.__name__ for t in allowed)}"
            )


def _value_type(spec: Any) -> ValueType:
    if isinstance(spec, ValueType):
        return spec
    try:
        return _PY_TO_VALUE_TYPE[spec]
    except (KeyError, TypeError):
        raise TypeError(
            f"unsupported option value type {spec!r}: use bool, int, float, str, "
            "datetime.timedelta or an aioudf.ValueType"
        ) from None


def _convert(vtype: ValueType, value: OptionValue) -> Any:
    if vtype is ValueType.DURATION:
        return datetime.timedelta(microseconds=value.durationValue / 1000)
    return getattr(value, _ONEOF_FIELD[vtype])


class Option(property, Generic[T]):
    """One TICKscript method of a UDF, e.g. ``.field('name', 42.0)``.

    ``types`` are the types of the method's arguments, in order: ``bool``,
    ``int``, ``float``, ``str``, ``datetime.timedelta`` (or
    :class:`~aioudf.ValueType` members). The value the handler reads is the
    single argument for one type, a tuple for several, and ``True`` for a
    method without arguments (a flag: ``False`` when not given).

    ``name`` is the method name in TICKscript; it defaults to the attribute
    name without trailing underscores, so ``as_`` declares ``.as()``.
    Without a ``default`` the option is required, except flags and repeated
    options. ``repeated=True`` lets the method be called several times and
    gives a list of the values, in call order.

    Reading an option is a read of a property implemented in C (the values
    live in an :class:`OptionValues` on the handler): about 0.1 µs, a
    quarter of what a descriptor written in Python costs, so a handler can
    read its options for every point.
    """

    # Typing: the value read from an instance is T. The overloads spell out
    # T for the common shapes so that `self.size` type-checks as `int`.
    @overload
    def __init__(self: Option[bool], *, name: str | None = ..., help: str = ...) -> None: ...
    @overload
    def __init__(
        self: Option[A],
        t1: type[A],
        /,
        *,
        name: str | None = ...,
        default: A = ...,
        repeated: Literal[False] = ...,
        help: str = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Option[tuple[A, B]],
        t1: type[A],
        t2: type[B],
        /,
        *,
        name: str | None = ...,
        default: tuple[A, B] = ...,
        repeated: Literal[False] = ...,
        help: str = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Option[tuple[A, B, C]],
        t1: type[A],
        t2: type[B],
        t3: type[C],
        /,
        *,
        name: str | None = ...,
        default: tuple[A, B, C] = ...,
        repeated: Literal[False] = ...,
        help: str = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Option[list[A]],
        t1: type[A],
        /,
        *,
        name: str | None = ...,
        repeated: Literal[True],
        help: str = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Option[list[tuple[A, B]]],
        t1: type[A],
        t2: type[B],
        /,
        *,
        name: str | None = ...,
        repeated: Literal[True],
        help: str = ...,
    ) -> None: ...
    @overload
    def __init__(
        self: Option[Any],
        *types: Any,
        name: str | None = ...,
        default: Any = ...,
        repeated: bool = ...,
        help: str = ...,
    ) -> None: ...

    def __init__(
        self,
        *types: Any,
        name: str | None = None,
        default: Any = _MISSING,
        repeated: bool = False,
        help: str = "",
    ) -> None:
        self.value_types: tuple[ValueType, ...] = tuple(_value_type(t) for t in types)
        self.repeated = repeated
        self.help = help
        self.name: str = name or ""
        self.attribute: str = ""
        if default is _MISSING:
            if repeated:
                default = []
            elif not self.value_types:
                default = False
        elif repeated:
            raise TypeError("a repeated option defaults to an empty list; drop default=")
        elif default is not None:
            _check_default(self.value_types, default)
        self.default = default

    @property
    def required(self) -> bool:
        """True if Init fails when the option is not given."""
        return self.default is _MISSING

    def __set_name__(self, owner: type, attribute: str) -> None:
        self.attribute = attribute
        if not self.name:
            self.name = attribute.rstrip("_") or attribute
        name = self.name

        def refuse(instance: object, value: object) -> None:
            raise AttributeError(f"option {name!r} is set by Kapacitor at Init")

        # Now the attribute is known, become a property reading it from the
        # handler's OptionValues (property.__init__ may be called again).
        # Its doc (help(), IDEs) is the TICKscript method and the help text.
        doc = f"{self.signature()}: {self.help}" if self.help else self.signature()
        property.__init__(self, attrgetter(f"_aioudf_options.{attribute}"), refuse, None, doc)
        self.__doc__ = doc  # a subclass's own docstring would hide property's

    if TYPE_CHECKING:  # at run time, property.__get__ (in C)

        @overload
        def __get__(self, instance: None, owner: type | None = None, /) -> Option[T]: ...
        @overload
        def __get__(self, instance: object, owner: type | None = None, /) -> T: ...
        def __get__(self, instance: object | None, owner: type | None = None, /) -> Any: ...

    def signature(self) -> str:
        """The method as TICKscript shows it, e.g. ``.field(STRING, DOUBLE)``."""
        return f".{self.name}({', '.join(t.name for t in self.value_types)})"

    def __repr__(self) -> str:
        flags = ", repeated" if self.repeated else ""
        if not self.required and not self.repeated:
            flags += f", default={self.default!r}"
        return f"Option({self.signature()}{flags})"

    def parse(self, given: Sequence[OptionMessage]) -> Any:
        """Turn every call of this method into the value the handler reads."""
        if not given:
            if self.required:
                example = ", ".join(_EXAMPLE[t] for t in self.value_types)
                raise OptionError(
                    f"missing required option {self.name!r}: add "
                    f".{self.name}({example}) to the UDF call"
                )
            return list(self.default) if self.repeated else self.default
        if len(given) > 1 and not self.repeated:
            raise OptionError(f"option {self.name!r} given {len(given)} times; it takes one call")
        parsed = [self._parse_call(call) for call in given]
        return parsed if self.repeated else parsed[0]

    def _parse_call(self, call: OptionMessage) -> Any:
        types = self.value_types
        values = call.values
        if len(values) != len(types):
            expected = ", ".join(t.name for t in types) or "no values"
            raise OptionError(
                f"option {self.name!r} takes {len(types)} value(s) ({expected}), got {len(values)}"
            )
        if not types:
            return True
        out = []
        for position, (vtype, value) in enumerate(zip(types, values, strict=True), start=1):
            field = value.WhichOneof("value")
            got: ValueType | None
            if field is not None:
                got = _FIELD_TO_TYPE[field]
            else:
                # proto3 enums are open: the type number may be one we do not know.
                try:
                    got = ValueType(value.type)
                except ValueError:
                    got = None
            if got is not vtype:
                where = f" value {position}" if len(types) > 1 else ""
                got_name = got.name if got is not None else f"value type {value.type}"
                raise OptionError(
                    f"option {self.name!r}{where} must be {vtype.name} "
                    f"(like {_EXAMPLE[vtype]}), got {got_name}"
                )
            out.append(_convert(vtype, value))
        return out[0] if len(out) == 1 else tuple(out)


#: The options of a handler class, keyed by TICKscript name.
OptionSpec = Mapping[str, Option[Any]]


class OptionValues:
    """A handler's option values, as attributes named like its Option attributes.

    Every handler has one: empty (each read explaining why) until Init, then
    the values Kapacitor gave (:func:`bind_options`).
    """

    def __init__(self, spec: OptionSpec, values: Mapping[str, Any] | None = None) -> None:
        self._aioudf_names = {option.attribute: name for name, option in spec.items()}
        if values is not None:
            for name, option in spec.items():
                setattr(self, option.attribute, values[name])

    def __getattr__(self, attribute: str) -> Any:  # only called for a missing value
        name = self.__dict__.get("_aioudf_names", {}).get(attribute, attribute)
        raise AttributeError(
            f"option {name!r} has no value yet: options are set at Init, before Handler.init() runs"
        )

    def __repr__(self) -> str:
        values = {k: v for k, v in vars(self).items() if k != "_aioudf_names"}
        return f"OptionValues({values!r})"


def bind_options(handler: Any, values: Mapping[str, Any]) -> None:
    """Give ``handler`` the option values ``parse_options`` returned, read as attributes."""
    handler._aioudf_options = OptionValues(type(handler).options, values)


def collect_options(classes: Iterable[type]) -> dict[str, Option[Any]]:
    """Gather the Option attributes of a class hierarchy (base classes first)."""
    spec: dict[str, Option[Any]] = {}
    for klass in classes:
        for value in vars(klass).values():
            if isinstance(value, Option):
                spec[value.name] = value
    return spec


def parse_options(spec: OptionSpec, given: Iterable[OptionMessage]) -> dict[str, Any]:
    """Validate the options of an InitRequest against ``spec``.

    Returns the Python value of every declared option. Raises
    :class:`~aioudf.OptionError` listing every problem found.
    """
    calls: dict[str, list[OptionMessage]] = {name: [] for name in spec}
    problems: list[str] = []
    for call in given:
        if call.name in calls:
            calls[call.name].append(call)
        else:
            known = ", ".join(sorted(spec)) or "none"
            problems.append(f"unknown option {call.name!r} (this UDF takes: {known})")
    values: dict[str, Any] = {}
    for name, option in spec.items():
        try:
            values[name] = option.parse(calls[name])
        except OptionError as exc:
            problems.append(str(exc))
    if problems:
        raise OptionError("; ".join(problems))
    return values
