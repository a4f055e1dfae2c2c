"""Heavy start-up off the critical path: load a model or open a client once per process.

::

    class Scorer(Handler):
        @startup
        def model(cls) -> Model:                 # plain def: runs in a worker thread
            return Model.load("/var/lib/models/cpu.onnx")

        async def point(self, point: Point) -> None:
            score = self.model.predict(...)      # loaded by now

The loader runs once per process, the first time a task starts (at its
Init), in the background: Kapacitor's Info, which it asks every UDF for when
it starts, and the InitResponse are answered at once, keepalives go on being
answered, and the handler's data methods (``point``, ``begin_batch``,
``end_batch``) wait for the load before their first call. Connections of a
socket server share the one load and its result. A loader may also be
``async def`` (opening a client), run on the event loop.

If the loader raises, every connection waiting for it ends with an
ErrorResponse naming the failure (``Scorer.model failed to load: OSError:
...``), which fails the task in Kapacitor with that text; the next task that
starts tries again.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

import anyio
import anyio.from_thread
import anyio.to_thread

from ..errors import StartupError

__all__ = ["Startup", "StartupError", "declared_startups", "install_startup", "startup"]

T = TypeVar("T")

#: Handler methods that wait for the start-up before their first call.
DATA_METHODS = ("point", "begin_batch", "end_batch")


class Startup(Generic[T]):
    """A value loaded once per process, on a handler class; see :func:`startup`."""

    def __init__(self, loader: Callable[[Any], Any]) -> None:
        self.loader = loader
        self.name = getattr(loader, "__name__", "startup")
        self.owner: type | None = None
        self.__doc__ = getattr(loader, "__doc__", None)
        self.loaded = False
        self._value: Any = None
        self._task: asyncio.Task[Any] | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.owner = owner

    @property
    def label(self) -> str:
        owner = self.owner.__name__ if self.owner is not None else "?"
        return f"{owner}.{self.name}"

    @overload
    def __get__(self, instance: None, owner: type) -> Startup[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> Startup[T] | T:
        if instance is None:
            return self
        if not self.loaded:
            raise StartupError(f"{self.label} is not loaded yet: read it from a data method")
        value: T = self._value
        return value

    def start(self) -> None:
        """Start loading in the background unless loaded or loading (event loop thread)."""
        if self.loaded:
            return
        task = self._task
        loop = asyncio.get_running_loop()
        if task is not None and task.get_loop() is loop and not task.done():
            return
        # A task of the process, not of a task group: the load is shared by
        # every connection and outlives the one whose Init started it (a
        # connection's group would cancel it when that one ends). Its owner
        # is this declaration, which keeps it for wait(); the loop ends it.
        task = self._task = loop.create_task(self._load(), name=f"aioudf start-up {self.label}")
        # Retrieved here, so a load nobody waited for is not logged as lost.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _load(self) -> None:
        loader: Callable[[Any], Any] = self.loader
        if inspect.iscoroutinefunction(loader):
            value = await loader(self.owner)
        else:
            value = await anyio.to_thread.run_sync(loader, self.owner)
        self._value = value
        self.loaded = True

    async def wait(self) -> T:
        """The loaded value, waiting for (and starting) the load; StartupError if it failed."""
        if not self.loaded:
            task = self._task
            if task is None or task.get_loop() is not asyncio.get_running_loop():
                self.start()  # no Init started it (in this event loop)
                task = self._task
            assert task is not None
            try:
                # Shielded: one connection giving up does not cancel the others' load.
                # A failed attempt stays failed for whoever waits on it; the
                # next Init starts a new one.
                await asyncio.shield(task)
            except Exception as exc:
                raise StartupError(
                    f"{self.label} failed to load: {type(exc).__name__}: {exc}"
                ) from exc
        value: T = self._value
        return value


@overload
def startup(loader: Callable[[Any], Awaitable[T]]) -> Startup[T]: ...
@overload
def startup(loader: Callable[[Any], T]) -> Startup[T]: ...
def startup(loader: Callable[[Any], Any]) -> Startup[Any]:
    """Declare a value loaded once per process before the handler's first data.

    Decorate a function of the handler class (``def model(cls)``, plain or
    ``async``); reading the attribute on a handler gives the loaded value.
    """
    return Startup(loader)


def declared_startups(cls: type) -> list[Startup[Any]]:
    """The :class:`Startup` declarations of a handler class."""
    found: dict[str, Startup[Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Startup):
                found[name] = value
    return list(found.values())


async def _wait_all(startups: list[Startup[Any]]) -> None:
    for item in startups:
        await item.wait()


def install_startup(cls: type, blocking: bool) -> None:
    """Make ``cls``'s Init start its loaders and its data methods wait for them."""
    startups = declared_startups(cls)
    if not startups:
        return

    def ready() -> bool:
        return all(item.loaded for item in startups)

    for name in ("init", *DATA_METHODS):
        function = getattr(cls, name, None)
        if function is None or getattr(function, "_aioudf_startup", None) is cls:
            continue
        wrapper = _wrap(function, name == "init", blocking, startups, ready)
        wrapper._aioudf_startup = cls  # type: ignore[attr-defined]
        setattr(cls, name, wrapper)


def _wrap(
    function: Callable[..., Any],
    is_init: bool,
    blocking: bool,
    startups: list[Startup[Any]],
    ready: Callable[[], bool],
) -> Callable[..., Any]:
    if is_init:
        if blocking:

            @functools.wraps(function)
            def init_blocking(self: Any, *args: Any) -> Any:
                anyio.from_thread.run_sync(_start_all, startups)
                return function(self, *args)

            return init_blocking

        @functools.wraps(function)
        async def init(self: Any, *args: Any) -> Any:
            _start_all(startups)
            return await function(self, *args)

        return init

    if blocking:

        @functools.wraps(function)
        def data_blocking(self: Any, message: Any) -> Any:
            if not ready():
                anyio.from_thread.run(_wait_all, startups)
            return function(self, message)

        return data_blocking

    @functools.wraps(function)
    async def data(self: Any, message: Any) -> Any:
        if not ready():
            await _wait_all(startups)
        return await function(self, message)

    return data


def _start_all(startups: list[Startup[Any]]) -> None:
    for item in startups:
        item.start()
