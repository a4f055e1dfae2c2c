"""``aioudf serve --reload``: reload the handler's code when its source files change.

For development. A change to a ``.py`` file under the watched directories
sends this process SIGHUP, the same reload an operator asks for: a new
process imports the code from disk and takes the socket and every live
Kapacitor connection over, so a task keeps running across an edit, with
its state (``snapshot()`` -> ``restore()``). A change that does not import
(a SyntaxError) is one line in the log and the process already serving
carries on; the next save tries again.

Files are watched with ``watchfiles`` (the ``aioudf[reload]`` extra) when it
is installed, else by polling their modification times every
:data:`POLL_INTERVAL` seconds in a worker thread. Hidden directories
(``.venv``, ``.git``) and ``__pycache__`` are not watched.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

import anyio

__all__ = ["POLL_INTERVAL", "changes", "python_files", "watch_and_reload", "with_reload"]

logger = logging.getLogger("aioudf")

T = TypeVar("T")

#: Seconds between two looks at the files, without watchfiles.
POLL_INTERVAL = 0.5

#: Looks at the files, one POLL_INTERVAL apart, until they stop changing
#: (an editor that writes a file in several steps makes one reload).
_SETTLE_ROUNDS = 10

Snapshot = dict[str, tuple[int, int]]


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__"


def python_files(directories: Sequence[str]) -> Snapshot:
    """Every ``.py`` file under ``directories``: its modification time and size."""
    found: Snapshot = {}
    for top in directories:
        for folder, subfolders, files in os.walk(top):
            subfolders[:] = [d for d in subfolders if not _skipped(d)]
            for name in files:
                if name.endswith(".py") and not _skipped(name):
                    path = os.path.join(folder, name)
                    try:
                        info = os.stat(path)
                    except OSError:  # removed since the listing
                        continue
                    found[path] = (info.st_mtime_ns, info.st_size)
    return found


def _differences(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(
        path for path in before.keys() | after.keys() if before.get(path) != after.get(path)
    )


async def _polled(
    directories: Sequence[str], interval: float, seen: Snapshot | None
) -> AsyncIterator[list[str]]:
    if seen is None:
        seen = await anyio.to_thread.run_sync(python_files, directories)
    while True:
        await anyio.sleep(interval)
        now = await anyio.to_thread.run_sync(python_files, directories)
        changed = _differences(seen, now)
        if not changed:
            continue
        for _ in range(_SETTLE_ROUNDS):  # until the writes are done
            await anyio.sleep(interval)
            settled = await anyio.to_thread.run_sync(python_files, directories)
            if settled == now:
                break
            changed = sorted({*changed, *_differences(now, settled)})
            now = settled
        seen = now
        yield changed


async def _watched(directories: Sequence[str], watchfiles: Any) -> AsyncIterator[list[str]]:
    def wanted(change: Any, path: str) -> bool:
        parts = path.split(os.sep)
        return path.endswith(".py") and not any(_skipped(p) for p in parts[-1:] + parts[:-1])

    async for batch in watchfiles.awatch(*directories, watch_filter=wanted):
        changed = sorted({path for _, path in batch})
        if changed:
            yield changed


def changes(
    directories: Sequence[str],
    *,
    interval: float = POLL_INTERVAL,
    poll: bool | None = None,
    baseline: Snapshot | None = None,
) -> AsyncIterator[list[str]]:
    """The ``.py`` files under ``directories`` that changed, one list per settled change.

    ``poll``: True to poll, False to require watchfiles, None (default) for
    watchfiles if it is installed. ``baseline``: for polling, the files as
    they were when watching began (:func:`python_files`); by default, as
    they are at the first iteration.
    """
    if poll is not True:
        try:
            import watchfiles
        except ImportError:
            if poll is False:
                raise
        else:
            return _watched(directories, watchfiles)
    return _polled(directories, interval, baseline)


def _reloadable() -> bool:
    """Whether SIGHUP is this process's reload now (else it would end the process)."""
    handler = signal.getsignal(signal.SIGHUP)
    return handler not in (signal.SIG_DFL, signal.SIG_IGN, None)


async def watch_and_reload(directories: Sequence[str], *, poll: bool | None = None) -> None:
    """Send this process SIGHUP each time a watched file changes; runs until cancelled.

    Logs ``reload: watching ...`` once the files are being watched.
    """
    polling = poll is True or (poll is None and not _has_watchfiles())
    baseline = await anyio.to_thread.run_sync(python_files, directories) if polling else None
    how = "polling" if polling else "watchfiles"
    logger.info("reload: watching .py files under %s (%s)", ", ".join(directories), how)
    async for changed in changes(directories, poll=polling, baseline=baseline):
        shown = changed[0] if len(changed) == 1 else f"{changed[0]} and {len(changed) - 1} more"
        if not _reloadable():
            logger.warning("reload: %s changed before serving began; not reloaded", shown)
            continue
        logger.info("reload: %s changed", shown)
        os.kill(os.getpid(), signal.SIGHUP)


def _has_watchfiles() -> bool:
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        return False
    return True


async def with_reload(
    main: Awaitable[T], directories: Sequence[str], *, poll: bool | None = None
) -> T:
    """Await ``main`` (a server) while :func:`watch_and_reload` watches; it ends with ``main``."""
    result: list[T] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(watch_and_reload, directories, poll=poll))
        result.append(await main)
        tg.cancel_scope.cancel()
    return result[0]
