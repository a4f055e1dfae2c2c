"""An ``aioudf serve`` child process for tests, read through its log lines."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


class ServerProcess:
    """`python -m aioudf serve ...` as a child process, with its log lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.log: list[str] = []

    @classmethod
    async def start(
        cls, env: dict[str, str], handler: str, path: Path, *extra: str
    ) -> ServerProcess:
        """``aioudf serve HANDLER --socket PATH EXTRA...``, once it logs that it serves."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aioudf",
            "serve",
            handler,
            "--socket",
            str(path),
            *extra,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        server = cls(process)
        await server.wait_for_log("serving ")
        return server

    async def wait_for_log(self, text: str) -> str:
        """Read log lines until one contains ``text`` (the server's own signal)."""
        assert self.process.stderr is not None
        while True:
            line = (await asyncio.wait_for(self.process.stderr.readline(), 30)).decode()
            if not line:
                raise AssertionError(f"server exited before logging {text!r}: {self.log}")
            self.log.append(line)
            if text in line:
                return line

    async def exit_code(self) -> int:
        assert self.process.stderr is not None
        rest = await asyncio.wait_for(self.process.stderr.read(), 30)
        self.log.extend(rest.decode().splitlines(keepends=True))
        return await asyncio.wait_for(self.process.wait(), 30)

    async def kill(self) -> None:
        """Kill it if it still runs, and reap it."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
