"""A tiny InfluxDB on loopback, answering a batch task's queries with rows a test gives.

A Kapacitor batch task (``batch |query('SELECT ...')``) asks InfluxDB's
``/query`` endpoint on its schedule. :class:`QueryServer` plays that
endpoint for an end-to-end test, in a thread of its own (so it answers while
the test's event loop, or the test itself, waits): every query gets the
answer set with :meth:`QueryServer.answer`, and the query texts Kapacitor
built (its ``WHERE time >= ... AND time < ...`` included) are kept in
:attr:`QueryServer.queries` to assert on.

Rows are :class:`~aioudf.formats.Batch` es (one series each: its name, its
tags, a ``time`` column and one column per field or per point tag not in the
batch's tags) or :class:`~aioudf.formats.DataPoint` s (one series per name and
tag set). Times are written as InfluxDB writes them: RFC 3339 strings, or
integers in the unit of an ``epoch`` parameter.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..formats._fields import format_time
from ..formats._points import Batch, DataPoint

__all__ = ["Answer", "QueryServer", "Rows", "series_of"]

#: What a query is answered with: batches and points, in any mix.
Rows = Iterable[Batch | DataPoint]
#: An answer: the rows, or a function of the query text that returns them.
Answer = Rows | Callable[[str], Rows]

_EPOCH_DIVISORS = {"ns": 1, "n": 1, "u": 1_000, "us": 1_000, "ms": 1_000_000, "s": 10**9}
_EPOCH_DIVISORS.update({"m": 60 * 10**9, "h": 3600 * 10**9})


def _stamp(nanoseconds: int, epoch: str) -> str | int:
    if not epoch:
        return format_time(nanoseconds)
    return nanoseconds // _EPOCH_DIVISORS[epoch]


def _series(
    name: str, tags: dict[str, str], points: Sequence[DataPoint], epoch: str
) -> dict[str, Any]:
    columns: list[str] = []
    for point in points:  # fields, then the points' own tags, in order of appearance
        columns.extend(k for k in point.fields if k not in columns)
    for point in points:
        columns.extend(k for k in point.tags if k not in tags and k not in columns)
    values = []
    for point in points:
        row: list[Any] = [_stamp(point.time, epoch)]
        row.extend(point.fields.get(c, point.tags.get(c)) for c in columns)
        values.append(row)
    series: dict[str, Any] = {"name": name, "columns": ["time", *columns], "values": values}
    if tags:
        series["tags"] = tags
    return series


def series_of(rows: Rows, epoch: str = "") -> list[dict[str, Any]]:
    """The rows as the ``series`` of an InfluxDB query result."""
    out: list[dict[str, Any]] = []
    loose: dict[tuple[str, tuple[tuple[str, str], ...]], list[DataPoint]] = {}
    for item in rows:
        if isinstance(item, Batch):
            out.append(_series(item.name, dict(item.tags), item.points, epoch))
        elif isinstance(item, DataPoint):
            loose.setdefault((item.name, tuple(sorted(item.tags.items()))), []).append(item)
        else:
            raise TypeError(f"a query is answered with Batch or DataPoint rows, not {item!r}")
    for (name, tags), points in loose.items():
        out.append(_series(name, dict(tags), points, epoch))
    return out


class QueryServer:
    """InfluxDB's ``/ping`` and ``/query`` on ``127.0.0.1``, on a free port."""

    def __init__(self) -> None:
        #: The query texts received, oldest first.
        self.queries: list[str] = []
        self._answer: Answer = ()
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, rows: Answer) -> None:
        """Answer every query from now on with ``rows`` (or ``rows(query_text)``)."""
        if not callable(rows):
            rows = list(rows)
            series_of(rows)  # a wrong row fails here, in the test, not in Kapacitor's log
        with self._lock:
            self._answer = rows

    def result(self, query: str, epoch: str = "") -> dict[str, Any]:
        """The JSON body InfluxDB would send for ``query``."""
        with self._lock:
            self.queries.append(query)
            answer = self._answer
        rows = answer(query) if callable(answer) else answer
        statement: dict[str, Any] = {"statement_id": 0}
        series = series_of(rows, epoch)
        if series:
            statement["series"] = series
        return {"results": [statement]}

    def start(self) -> None:
        self._thread = threading.Thread(
            # A short poll: stop() waits for one (serve_forever's default is 0.5 s).
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="aioudf-influxdb",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("X-Influxdb-Version", "1.8.10")
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = urllib.parse.parse_qs(url.query)
                params.update(urllib.parse.parse_qs(body))  # a POST may carry q in its form
                if url.path == "/ping":
                    self._reply(204)
                elif url.path == "/query":
                    query = (params.get("q") or [""])[0]
                    epoch = (params.get("epoch") or [""])[0]
                    if epoch and epoch not in _EPOCH_DIVISORS:
                        self._reply(400, json.dumps({"error": f"bad epoch {epoch}"}).encode())
                        return
                    try:
                        result = server.result(query, epoch)
                    except Exception as exc:  # the test's own answer function failed
                        text = f"the test's answer to {query!r} failed: {exc!r}"
                        self._reply(500, json.dumps({"error": text}).encode())
                        return
                    self._reply(200, json.dumps(result).encode())
                else:
                    self._reply(404, json.dumps({"error": f"no {url.path} here"}).encode())

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's output is no place for an access log

        return Handler
