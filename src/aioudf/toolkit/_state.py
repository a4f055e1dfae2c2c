"""Per-group state declared on a handler, snapshotted and restored without user code.

Kapacitor gives every point a group key (``host=a,cpu=cpu0``, or ``""``
without ``groupBy``); a UDF that keeps anything between points keeps it per
group. Declare it once::

    class Counter(Handler):
        @per_group
        def seen(self) -> dict[str, int]:
            return {"points": 0}

        async def point(self, point: Point) -> None:
            self.seen[point.group]["points"] += 1

``self.seen`` is a dict from group key to state; a group's state is made by
the decorated method (which can read the handler's options) the first time
the group is used. Every declared state goes into the handler's default
``snapshot()`` and comes back in ``restore()``, inside a versioned envelope::

    {"format": "aioudf.state", "states": {"seen": {"version": 1, "groups": {...}}}}

A snapshot whose state has an older ``version`` than the declaration passes
through the declaration's ``migrate(data, version)`` hook (per group), or is
refused with a :class:`~aioudf.RestoreError` naming the versions; a newer one
is always refused. Restore is all or nothing: a snapshot that fails anywhere
leaves the current state untouched.

The default codec, :class:`JsonCodec`, writes JSON (never pickle: snapshots
live in Kapacitor's database). It converts a state to plain data this way:

- an object with ``dump_state()`` / ``load_state(data)`` (the windows of
  :mod:`aioudf.toolkit` have them): those methods;
- a dataclass: its fields, each converted by these same rules;
- dicts, lists, tuples, deques, str, int, float, bool and None as themselves
  (NaN and infinities included), NumPy arrays as lists.

Restoring makes a fresh state with the declared factory (so it sees the
options of the task being restored) and fills it: ``load_state``, dataclass
fields, containers refilled in place (a ``deque(maxlen=n)`` keeps its bound),
arrays of the fresh dtype. Anything else needs a codec of your own: any object
with the four methods of :class:`Codec`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar, overload, runtime_checkable

from ..errors import RestoreError

__all__ = [
    "Codec",
    "GroupState",
    "Groups",
    "JsonCodec",
    "Stateful",
    "declared_states",
    "per_group",
    "restore_states",
    "snapshot_states",
]

S = TypeVar("S")
# The handler a state belongs to. Any object: the state lives in the
# instance's __dict__ and its declarations on the class, so this module needs
# nothing of BaseHandler (which imports it) to keep them.
H = TypeVar("H")

#: The marker of an aioudf state snapshot.
FORMAT = "aioudf.state"

#: ``migrate(data, version)``: one group's data as written by ``version``,
#: returned as the current version reads it.
Migration = Callable[[Any, int], Any]


@runtime_checkable
class Stateful(Protocol):
    """A state object that converts itself to plain data and back."""

    def dump_state(self) -> Any:
        """Plain data (what JSON holds) describing the object."""

    def load_state(self, data: Any) -> None:
        """Fill a freshly made object from what :meth:`dump_state` returned."""


class Codec(Protocol):
    """How group states become snapshot bytes and come back.

    ``dump``/``load`` convert one group's state to and from what ``encode``
    can write; ``encode``/``decode`` turn the whole envelope (dicts, lists,
    strings and what ``dump`` returned) into bytes and back.
    """

    name: str

    def dump(self, state: Any) -> Any: ...
    def load(self, fresh: Any, data: Any) -> Any: ...
    def encode(self, document: Any) -> bytes: ...
    def decode(self, data: bytes) -> Any: ...


class JsonCodec:
    """JSON snapshots of plain data, dataclasses and :class:`Stateful` objects."""

    name = "json"

    def dump(self, state: Any) -> Any:
        # Plain data goes to json as it is (converted in C); what json cannot
        # write reaches _plain() through its ``default`` hook.
        return state

    @staticmethod
    def _plain(state: Any) -> Any:
        """One level of conversion of what json cannot write by itself."""
        dump_state = getattr(state, "dump_state", None)
        if dump_state is not None:
            return dump_state()
        if isinstance(state, collections.deque | set | frozenset):
            return list(state)
        if dataclasses.is_dataclass(state) and not isinstance(state, type):
            return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        tolist = getattr(state, "tolist", None)  # NumPy arrays and scalars
        if tolist is not None:
            return tolist()
        raise TypeError(
            f"{type(state).__name__!r} values cannot be written to a JSON snapshot: give it "
            "dump_state() and load_state(), make it a dataclass, or use another codec"
        )

    def load(self, fresh: Any, data: Any) -> Any:
        load_state = getattr(fresh, "load_state", None)
        if load_state is not None:
            load_state(data)
            return fresh
        if dataclasses.is_dataclass(fresh) and not isinstance(fresh, type):
            if not isinstance(data, dict):
                raise TypeError(f"expected an object for {type(fresh).__name__}, got {data!r}")
            for f in dataclasses.fields(fresh):
                if f.name in data:
                    setattr(fresh, f.name, self.load(getattr(fresh, f.name), data[f.name]))
            return fresh
        if isinstance(fresh, dict):
            fresh.clear()
            fresh.update(data)
            return fresh
        if isinstance(fresh, list | collections.deque):
            fresh.clear()
            fresh.extend(data)
            return fresh
        if isinstance(fresh, tuple):
            return tuple(data)
        dtype = getattr(fresh, "dtype", None)
        if dtype is not None and hasattr(fresh, "tolist"):
            import numpy

            return numpy.asarray(data, dtype=dtype)
        return data

    def encode(self, document: Any) -> bytes:
        return json.dumps(document, separators=(",", ":"), default=self._plain).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class Groups(dict[str, S]):
    """Group key -> state; a missing group gets a fresh state on first use."""

    __slots__ = ("_declaration", "_handler")

    def __init__(self, declaration: GroupState[Any, S], handler: object) -> None:
        super().__init__()
        self._declaration = declaration
        self._handler = handler

    def __missing__(self, group: str) -> S:
        state = self[group] = self._declaration.factory(self._handler)
        return state

    def fresh(self) -> S:
        """A new state as the declaration makes it (not stored in any group)."""
        return self._declaration.factory(self._handler)


class GroupState(Generic[H, S]):
    """A per-group state declaration; usually written with :func:`per_group`.

    ``factory(handler)`` makes one group's state. ``version`` is written into
    snapshots; raise it when the shape of the state changes and give
    ``migrate(data, old_version)`` to read older snapshots.
    """

    def __init__(
        self,
        factory: Callable[[H], S],
        *,
        version: int = 1,
        migrate: Migration | None = None,
    ) -> None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be an integer >= 1, got {version!r}")
        self.factory = factory
        self.version = version
        self.migrate = migrate
        self.name = getattr(factory, "__name__", "state")
        self.__doc__ = getattr(factory, "__doc__", None)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        # The declaration moves to a registry of the class, and each handler
        # gets its Groups in its own __dict__ when created (BaseHandler.__new__):
        # an attribute that shadows a class attribute misses CPython's fast
        # path, which cost a moving average 3% of its instructions per point.
        registry = dict(vars(owner).get("_aioudf_group_states", {}))
        registry[name] = self
        type.__setattr__(owner, "_aioudf_group_states", registry)
        type.__delattr__(owner, name)

    @overload
    def __get__(self, instance: None, owner: type) -> GroupState[H, S]: ...
    @overload
    def __get__(self, instance: H, owner: type) -> Groups[S]: ...
    def __get__(self, instance: H | None, owner: type) -> GroupState[H, S] | Groups[S]:
        # Only reached before the class is complete, or outside a handler.
        if instance is None:
            return self
        return self.attach(instance)

    def attach(self, handler: object) -> Groups[S]:
        """Give ``handler`` its (empty) groups of this state."""
        groups = Groups(self, handler)
        # setattr, never handler.__dict__[...]: touching __dict__ turns the
        # object's inline attribute values into a dict, and every attribute
        # read of the handler gets slower (measured: 700 instructions a point
        # in moving_avg).
        object.__setattr__(handler, self.name, groups)
        return groups

    def groups(self, handler: object) -> Groups[S]:
        """The handler's groups of this state."""
        found = getattr(handler, self.name, None)
        if not isinstance(found, Groups):
            return self.attach(handler)
        return found


@overload
def per_group(factory: Callable[[H], S], /) -> GroupState[H, S]: ...
@overload
def per_group(
    *, version: int = 1, migrate: Migration | None = None
) -> Callable[[Callable[[H], S]], GroupState[H, S]]: ...
def per_group(
    factory: Callable[[H], S] | None = None,
    /,
    *,
    version: int = 1,
    migrate: Migration | None = None,
) -> GroupState[H, S] | Callable[[Callable[[H], S]], GroupState[H, S]]:
    """Declare per-group state: decorate the method that makes one group's state.

    ``@per_group`` alone, or ``@per_group(version=2, migrate=upgrade)``.
    """
    if factory is not None:
        return GroupState(factory, version=version, migrate=migrate)

    def declare(function: Callable[[H], S]) -> GroupState[H, S]:
        return GroupState(function, version=version, migrate=migrate)

    return declare


def declared_states(cls: type) -> dict[str, GroupState[Any, Any]]:
    """The :class:`GroupState` declarations of a handler class, by attribute name."""
    found: dict[str, GroupState[Any, Any]] = {}
    for klass in reversed(cls.__mro__):
        for name in vars(klass):
            found.pop(name, None)  # overridden by something that is not state
        found.update(vars(klass).get("_aioudf_group_states", {}))
    return found


def _codec(handler: object) -> Codec:
    codec: Codec = getattr(handler, "state_codec", None) or JsonCodec()
    return codec


def snapshot_states(handler: object) -> bytes:
    """The handler's declared states as snapshot bytes (``b""`` if it declares none)."""
    declarations = declared_states(type(handler))
    if not declarations:
        return b""
    codec = _codec(handler)
    states: dict[str, dict[str, Any]] = {}
    for name, declaration in declarations.items():
        groups = {group: codec.dump(state) for group, state in declaration.groups(handler).items()}
        states[name] = {"version": declaration.version, "groups": groups}
    try:
        return codec.encode({"format": FORMAT, "states": states})
    except Exception as exc:
        # Name the state and group that cannot be written (the slow way, once).
        for name, entry in states.items():
            for group, data in entry["groups"].items():
                try:
                    codec.encode(data)
                except Exception as error:
                    where = f"{type(handler).__name__}.{name} of group {group!r}"
                    raise TypeError(f"cannot snapshot {where}: {error}") from error
        raise TypeError(f"cannot snapshot {type(handler).__name__}: {exc}") from exc


def restore_states(handler: object, snapshot: bytes) -> None:
    """Replace the handler's declared states with those in ``snapshot``.

    Raises :class:`~aioudf.RestoreError` (and changes nothing) when the
    snapshot cannot be read, was written by a newer version of a state, or by
    an older one that no ``migrate`` hook upgrades.
    """
    declarations = declared_states(type(handler))
    if not declarations or not snapshot:
        return
    cls = type(handler).__name__
    codec = _codec(handler)
    try:
        document = codec.decode(snapshot)
    except Exception as exc:
        raise RestoreError(
            f"{cls} cannot read the snapshot: it is not {codec.name} data ({exc})"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RestoreError(
            f"{cls} cannot read the snapshot: it is not an aioudf state snapshot "
            "(written by another UDF, or by a version that kept its own format)"
        )
    saved = document.get("states")
    if not isinstance(saved, dict):
        raise RestoreError(f"{cls} cannot read the snapshot: it has no states")
    restored: dict[str, dict[str, Any]] = {}
    for name, declaration in declarations.items():
        entry = saved.get(name)
        if entry is None:
            continue  # a state added since the snapshot: it starts empty
        restored[name] = dict(_restore_groups(handler, cls, name, declaration, entry, codec))
    for name, groups in restored.items():
        live = declarations[name].groups(handler)
        live.clear()
        live.update(groups)


def _restore_groups(
    handler: object,
    cls: str,
    name: str,
    declaration: GroupState[Any, Any],
    entry: Any,
    codec: Codec,
) -> Iterator[tuple[str, Any]]:
    where = f"{cls}.{name}"
    version = entry.get("version") if isinstance(entry, dict) else None
    groups = entry.get("groups") if isinstance(entry, dict) else None
    if isinstance(version, bool) or not isinstance(version, int) or not isinstance(groups, dict):
        raise RestoreError(f"snapshot of {where} is malformed (no version or no groups)")
    if version > declaration.version:
        raise RestoreError(
            f"snapshot of {where} was written by version {version} of that state; "
            f"this handler reads version {declaration.version} (downgrade not supported)"
        )
    if version < declaration.version and declaration.migrate is None:
        raise RestoreError(
            f"snapshot of {where} is version {version}; this handler reads version "
            f"{declaration.version} and has no migrate hook for it"
        )
    for group, data in groups.items():
        try:
            if version < declaration.version:
                assert declaration.migrate is not None
                data = declaration.migrate(data, version)
            state = codec.load(declaration.factory(handler), data)
        except Exception as exc:
            label = "migrating" if version < declaration.version else "restoring"
            raise RestoreError(
                f"{label} {where} for group {group!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        yield group, state
