"""Declarative options: what Info advertises, and how Init values are checked and typed."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from standin import options as make_options

from aioudf import EdgeType, Handler, Option, OptionError, ValueType
from aioudf._pb import udf_pb2 as pb
from aioudf.toolkit._handler import describe
from aioudf.toolkit._options import bind_options, parse_options


class Full(Handler):
    wants = EdgeType.BATCH
    provides = EdgeType.STREAM

    field = Option(str)
    size = Option(int)
    scale = Option(float, default=1.5)
    as_ = Option(str, name="as", default="avg")
    enabled = Option(bool, default=True)
    period = Option(datetime.timedelta, default=datetime.timedelta(seconds=10))
    pair = Option(str, float, default=("x", 0.0))
    tag = Option(str, str, repeated=True)
    sort = Option()  # a flag: .sort()


def parse(handler: type[Handler], *given: pb.Option) -> dict[str, Any]:
    return parse_options(handler.options, given)


def duration(ns: int) -> pb.Option:
    option = pb.Option(name="period")
    option.values.add(type=pb.DURATION, durationValue=ns)
    return option


def test_info_lists_every_option_with_its_value_types() -> None:
    info = describe(Full)
    assert info.wants == pb.BATCH
    assert info.provides == pb.STREAM
    types = {name: list(o.valueTypes) for name, o in info.options.items()}
    assert types == {
        "field": [pb.STRING],
        "size": [pb.INT],
        "scale": [pb.DOUBLE],
        "as": [pb.STRING],
        "enabled": [pb.BOOL],
        "period": [pb.DURATION],
        "pair": [pb.STRING, pb.DOUBLE],
        "tag": [pb.STRING, pb.STRING],
        "sort": [],
    }


def test_values_are_converted_to_python_types() -> None:
    values = parse(
        Full,
        *make_options(field="usage", size=10, scale=2.0, enabled=False, pair=("y", 4.5)),
        duration(1_500_000_000),
        *make_options(tag=("a", "b")),
        *make_options(tag=("c", "d")),
        pb.Option(name="sort"),
    )
    assert values == {
        "field": "usage",
        "size": 10,
        "scale": 2.0,
        "as": "avg",
        "enabled": False,
        "period": datetime.timedelta(seconds=1.5),
        "pair": ("y", 4.5),
        "tag": [("a", "b"), ("c", "d")],
        "sort": True,
    }


def test_defaults_apply_when_options_are_absent() -> None:
    values = parse(Full, *make_options(field="f", size=1))
    assert values["scale"] == 1.5
    assert values["as"] == "avg"
    assert values["period"] == datetime.timedelta(seconds=10)
    assert values["tag"] == []
    assert values["sort"] is False


@pytest.mark.parametrize(
    ("given", "error"),
    [
        (
            make_options(size=1),
            "missing required option 'field': add .field('text') to the UDF call",
        ),
        (
            make_options(field="f", size=1, colour="red"),
            "unknown option 'colour' (this UDF takes: as, enabled, field, pair, period, "
            "scale, size, sort, tag)",
        ),
        (make_options(field="f", size=1.5), "option 'size' must be INT (like 10), got DOUBLE"),
        (
            make_options(field="f", size=1, scale=2),
            "option 'scale' must be DOUBLE (like 1.5), got INT",
        ),
        (
            make_options(field="f", size=1, pair=("a", "b")),
            "option 'pair' value 2 must be DOUBLE (like 1.5), got STRING",
        ),
        (
            make_options(field="f", size=1, pair="a"),
            "option 'pair' takes 2 value(s) (STRING, DOUBLE), got 1",
        ),
        (
            make_options(field="f", size=1, sort=True),
            "option 'sort' takes 0 value(s) (no values), got 1",
        ),
        (
            [*make_options(field="f", size=1), *make_options(size=2)],
            "option 'size' given 2 times; it takes one call",
        ),
    ],
)
def test_invalid_options_are_refused_with_a_clear_error(given: list[pb.Option], error: str) -> None:
    with pytest.raises(OptionError) as raised:
        parse(Full, *given)
    assert str(raised.value) == error


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(OptionError) as raised:
        parse(Full, *make_options(colour="red", size="ten"))
    assert str(raised.value).split("; ") == [
        "unknown option 'colour' (this UDF takes: as, enabled, field, pair, period, scale, "
        "size, sort, tag)",
        "missing required option 'field': add .field('text') to the UDF call",
        "option 'size' must be INT (like 10), got STRING",
    ]


def test_value_type_is_taken_from_the_oneof_or_the_type_field() -> None:
    # Kapacitor sets both; an OptionValue carrying only `type` holds the zero value.
    only_type = pb.Option(name="size", values=[pb.OptionValue(type=pb.INT)])
    assert parse(Full, *make_options(field="f"), only_type)["size"] == 0


def test_options_read_as_attributes_after_init_only() -> None:
    handler = Full()
    with pytest.raises(AttributeError, match="option 'field' has no value yet"):
        _ = handler.field
    bind_options(handler, parse(Full, *make_options(field="f", size=3)))
    assert (handler.field, handler.size, handler.as_) == ("f", 3, "avg")
    with pytest.raises(AttributeError, match="set by Kapacitor at Init"):
        handler.size = 4


def test_options_document_themselves() -> None:
    class Documented(Handler):
        field = Option(str, help="the field to average")
        size = Option(int)

    # What help() and IDEs show for the attribute.
    assert Documented.field.__doc__ == ".field(STRING): the field to average"
    assert Documented.size.__doc__ == ".size(INT)"


def test_options_are_inherited_and_can_be_overridden() -> None:
    class Child(Full):
        size = Option(int, default=5)
        extra = Option(str, default="")

    assert Child.options["size"].default == 5
    assert {"field", "extra", "as"} <= set(Child.options)
    assert Full.options["size"].required


def test_unsupported_type_is_a_declaration_error() -> None:
    with pytest.raises(TypeError, match="option 'kind': unsupported value type list"):

        class Bad(Handler):
            kind = Option(list)


def test_repeated_option_cannot_have_a_default() -> None:
    with pytest.raises(TypeError, match=r"option 'tags': .*drop default="):

        class Bad(Handler):
            tags = Option(str, repeated=True, default=["a"])


def test_value_types_may_be_given_as_value_type_members() -> None:
    assert Option(ValueType.DURATION, ValueType.BOOL).value_types == (
        ValueType.DURATION,
        ValueType.BOOL,
    )


def _types_check(handler: Full) -> None:
    # Checked by mypy (never run): option attributes have their Python types.
    size: int = handler.size
    field: str = handler.field
    pair: tuple[str, float] = handler.pair
    tags: list[tuple[str, str]] = handler.tag
    period: datetime.timedelta = handler.period
    del size, field, pair, tags, period
