"""UDF options: declared once, advertised in Info, validated at Init.

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

Values are typed through the one option table, ``aioudf.wire``'s
``_values`` (TICKscript text <-> typed value <-> ``OptionValue``).
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ..errors import DeclarationError, OptionError
from ..wire._messages import Option as OptionMessage
from ..wire._messages import ValueType
from ..wire._values import _EXAMPLE, _ONEOF_FIELD, _PY_TO_VALUE_TYPE, python_value, signature

__all__ = [
    "Option",
    "OptionSpec",
    "OptionValues",
    "parse_options",
]

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")

_MISSING: Any = object()


_FIELD_TO_TYPE = {field: vtype for vtype, field in _ONEOF_FIELD.items()}


# The Python values a default of each type may be (bool is an int: refused).
_DEFAULT_TYPES: dict[ValueType, tuple[type, ...]] = {
    ValueType.BOOL: (bool,),
    ValueType.INT: (int,),
    ValueType.DOUBLE: (float, int),
    ValueType.STRING: (str,),
    ValueType.DURATION: (datetime.timedelta,),
}


def _type_name(spec: Any) -> str:
    """A value type as the user wrote it: ``float``, ``timedelta``, ``ValueType.DOUBLE``."""
    if isinstance(spec, ValueType):
        return f"ValueType.{spec.name}"
    return getattr(spec, "__name__", None) or repr(spec)


def a_or_an(name: str) -> str:
    """``name`` with its indefinite article: ``a float``, ``an int`` (for error messages)."""
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _default_problem(specs: tuple[Any, ...], types: tuple[ValueType, ...], default: Any) -> str:
    """What is wrong with ``default`` for these types, in the user's type names; '' if nothing."""
    if not types:
        if not isinstance(default, bool):
            return f"a flag's default is True or False, got {default!r}"
        return ""
    values = default if len(types) > 1 else (default,)
    if len(types) > 1 and (not isinstance(default, tuple) or len(default) != len(types)):
        return f"default must be a tuple of {len(types)} values, got {default!r}"
    for position, (spec, vtype, value) in enumerate(zip(specs, types, values, strict=True), 1):
        allowed = _DEFAULT_TYPES[vtype]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            where = f"value {position} of the default" if len(types) > 1 else "default"
            got, wanted = a_or_an(type(value).__name__), a_or_an(_type_name(spec))
            give = " or ".join(a_or_an(t.__name__) for t in allowed)
            return f"{where} {value!r} is {got}, not {wanted}: give {give}"
    return ""


def _value_type(spec: Any) -> ValueType:
    if isinstance(spec, ValueType):
        return spec
    try:
        return _PY_TO_VALUE_TYPE[spec]
    except (KeyError, TypeError):
        raise TypeError(
            f"unsupported value type {_type_name(spec)}: use bool, int, float, str, "
            "datetime.timedelta or an aioudf.ValueType"
        ) from None


def _declared_at() -> tuple[str, int]:
    """The file and line of the code that called into this module (an Option declaration)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


# Option[T] is generic for type checkers only: at run time the subscript
# gives Option back, and Option's page in help() (and help(aioudf)) is not
# padded with typing.Generic's machinery.
if TYPE_CHECKING:
    from typing import Generic as _Typed
else:

    class _Typed:
        __slots__ = ()

        def __class_getitem__(cls, item: Any) -> Any:
            return cls


class Option(property, _Typed[T]):
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
        self.repeated = repeated
        self.help = help
        self.name: str = name or ""
        self.attribute: str = ""
        # A mistake in the declaration is raised when the handler class is
        # made (collect_options), where the option's name is known, as a
        # DeclarationError naming the line of this call.
        self._problem = ""
        self._declared_at = _declared_at()
        try:
            self.value_types: tuple[ValueType, ...] = tuple(_value_type(t) for t in types)
        except TypeError as exc:
            self.value_types = ()
            self._problem = str(exc)
        if default is _MISSING:
            if repeated:
                default = []
            elif not self.value_types:
                default = False
        elif repeated:
            self._problem = self._problem or (
                "a repeated option defaults to an empty list; drop default="
            )
        elif default is not None and not self._problem:
            self._problem = _default_problem(types, self.value_types, default)
        self.default = default

    def _check(self) -> None:
        # DeclarationError naming the option, the types as written
        # ("option 'alpha': default '0.5' is a str, not a float: ...") and
        # where Option(...) is written.
        if self._problem:
            filename, lineno = self._declared_at
            name = self.name or self.attribute or "?"
            raise DeclarationError(
                f"option {name!r}: {self._problem}", filename=filename, lineno=lineno
            )

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
        return signature(self.name, self.value_types)

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
            out.append(python_value(vtype=vtype, value=value))
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
                value._check()
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
