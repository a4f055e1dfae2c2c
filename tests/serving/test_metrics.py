"""Prometheus metrics of a socket server: counted per task node, scraped over HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scrape import Samples, documented_metrics, parse, value
from udf_handlers import BatchEcho, Fails, ThreadedEcho

import aioudf.serving._metrics
from aioudf import UnixServer
from aioudf.errors import AioudfError
from aioudf.serving._metrics import Metrics, MetricsUnavailable, parse_address
from aioudf.serving._metrics_http import MetricsEndpoint
from aioudf.testing import Batch, DataPoint, Kapacitor, UDFError


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    """One HTTP/1.1 request to the endpoint; its status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def http_get_with(port: int, path: str, headers: dict[str, str]) -> tuple[str, bytes]:
    """GET ``path`` with ``headers``; the response's head (as text) and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = "".join(f"{key}: {text}\r\n" for key, text in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


async def scrape_text(server: UnixServer) -> str:
    assert server.metrics_endpoint is not None
    status, body = await http_get(server.metrics_endpoint.port, "/metrics")
    assert status == 200
    return body.decode()


async def scrape(server: UnixServer) -> Samples:
    assert server.metrics_endpoint is not None
    status, body = await http_get(server.metrics_endpoint.port, "/metrics")
    assert status == 200
    return parse(body.decode())


@pytest.fixture
async def echo_server(socket_path: Path) -> AsyncIterator[UnixServer]:
    async with UnixServer(Fails, socket_path, metrics="127.0.0.1:0") as server:
        yield server


def points(n: int, **fields: float) -> list[DataPoint]:
    return [DataPoint("cpu", {"v": 1.0, **fields}, time=t + 1) for t in range(n)]


async def test_points_are_counted_per_task_and_node(
    echo_server: UnixServer, socket_path: Path
) -> None:
    udf = Kapacitor(socket_path)
    await udf.run({"in": "nowhere"}, points=points(700), task_id="a", node_id="n1")
    await udf.run({"in": "nowhere"}, points=points(3), task_id="b", node_id="n1")
    samples = await scrape(echo_server)
    for task, sent in (("a", 700), ("b", 3)):
        labels = {"task": task, "node": "n1"}
        assert value(samples, "aioudf_points_received_total", **labels) == sent
        assert value(samples, "aioudf_points_emitted_total", **labels) == sent
        assert value(samples, "aioudf_requests_received_total", request="point", **labels) == sent
        assert value(samples, "aioudf_requests_received_total", request="init", **labels) == 1
        # One point() call in POINT_SAMPLE is timed.
        timed = value(samples, "aioudf_handler_seconds_count", request="point", **labels)
        assert timed == pytest.approx(sent // aioudf.serving._metrics.POINT_SAMPLE, abs=1)
        assert value(samples, "aioudf_handler_seconds_count", request="stop", **labels) == 1
    # Info (asked on a connection of its own): before any Init, no task or node.
    assert value(samples, "aioudf_requests_received_total", task="", node="", request="info") >= 1
    assert value(samples, "aioudf_connections_total") >= 3  # Info's, a's and b's
    assert value(samples, "aioudf_connections_open") == 0


async def test_batches_are_counted(socket_path: Path) -> None:
    async with UnixServer(BatchEcho, socket_path, metrics="127.0.0.1:0") as server:
        batches = [Batch("cpu", points(4), tags={"host": h}) for h in ("a", "b")]
        await Kapacitor(socket_path).run(batches=batches, task_id="t", node_id="n")
        samples = await scrape(server)
    labels = {"task": "t", "node": "n"}
    assert value(samples, "aioudf_batches_received_total", **labels) == 2
    assert value(samples, "aioudf_batches_emitted_total", **labels) == 2
    assert value(samples, "aioudf_points_received_total", **labels) == 8
    assert value(samples, "aioudf_points_emitted_total", **labels) == 8
    assert value(samples, "aioudf_requests_received_total", request="begin_batch", **labels) == 2


async def test_blocking_handler_points_are_counted(socket_path: Path) -> None:
    async with UnixServer(ThreadedEcho, socket_path, metrics="127.0.0.1:0") as server:
        await Kapacitor(socket_path).run(points=points(600), task_id="t", node_id="n")
        samples = await scrape(server)
    assert value(samples, "aioudf_points_emitted_total", task="t", node="n") == 600
    assert value(samples, "aioudf_handler_seconds_count", task="t", node="n", request="point") >= 2


async def test_errors_are_counted_by_kind(echo_server: UnixServer, socket_path: Path) -> None:
    udf = Kapacitor(socket_path)
    with pytest.raises(UDFError, match=r"Fails\.point\(\) failed"):
        await udf.run({"in": "point"}, points=points(1, boom=1.0), task_id="bad", node_id="n")
    samples = await scrape(echo_server)
    assert value(samples, "aioudf_errors_total", task="bad", node="n", kind="handler") == 1


async def test_a_refused_option_is_counted(echo_server: UnixServer, socket_path: Path) -> None:
    # The TICKscript lacks the required .in(): refused before the handler's init().
    with pytest.raises(UDFError, match="missing required option 'in'"):
        await Kapacitor(socket_path).run(points=points(1), task_id="t", node_id="n")
    samples = await scrape(echo_server)
    assert value(samples, "aioudf_errors_total", task="t", node="n", kind="options_refused") == 1
    assert value(samples, "aioudf_errors_total", task="t", node="n", kind="init_refused") == 0


async def test_a_task_nodes_error_counts_start_at_zero(
    echo_server: UnixServer, socket_path: Path
) -> None:
    await Kapacitor(socket_path).run({"in": "nowhere"}, points=points(2), task_id="t", node_id="n")
    samples = await scrape(echo_server)
    errors = {
        dict(labels)["kind"]: count
        for (name, labels), count in samples.items()
        if name == "aioudf_errors_total" and dict(labels)["task"] == "t"
    }
    assert errors == dict.fromkeys(aioudf.serving._metrics.ERROR_KINDS, 0.0)
    assert {"handler", "protocol", "options_refused", "init_refused"} <= set(errors)


async def test_one_label_names_the_request_type(echo_server: UnixServer) -> None:
    await Kapacitor(echo_server.path).run({"in": "x"}, points=points(1), task_id="t", node_id="n")
    text = await scrape_text(echo_server)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("aioudf_requests_received", "aioudf_handler_seconds"):
        labels = [set(s.labels) - {"le"} for s in families[name].samples]
        assert all(names == {"task", "node", "request"} for names in labels), name
        assert any(s.labels["request"] == "init" for s in families[name].samples), name


async def test_a_healthy_single_process_server_has_one_worker(echo_server: UnixServer) -> None:
    samples = await scrape(echo_server)
    assert value(samples, "aioudf_workers_alive") == 1
    assert value(samples, "aioudf_build_info", version=aioudf.__version__) == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    # Embedded in a service's registry, with no supervisor: no workers gauge at all.
    assert "aioudf_workers_alive" not in Metrics().render().decode()


async def test_openmetrics_when_the_scraper_asks_for_it(echo_server: UnixServer) -> None:
    assert echo_server.metrics_endpoint is not None
    port = echo_server.metrics_endpoint.port
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    head, body = await http_get_with(port, "/metrics", {"Accept": accept})
    assert "content-type: application/openmetrics-text; version=1.0.0" in head.lower()
    assert body.endswith(b"# EOF\n")
    head, body = await http_get_with(port, "/metrics", {})
    assert "content-type: text/plain; version=0.0.4" in head.lower()
    assert not body.endswith(b"# EOF\n")


async def test_keepalive_latency_is_observed(socket_path: Path) -> None:
    async with UnixServer(Fails, socket_path, metrics="127.0.0.1:0") as server:
        async with Kapacitor(socket_path, timeout=0.05).task(
            {"in": "nowhere"}, task_id="t", node_id="n"
        ) as task:
            # Keepalives go every timeout / 2; wait for a few through the scrape.
            async def answered() -> float:
                while True:
                    samples = await scrape(server)
                    count = value(
                        samples, "aioudf_keepalive_latency_seconds_count", task="t", node="n"
                    )
                    if count >= 2:
                        return count
                    await asyncio.sleep(0.05)  # nothing to await: keepalives are the client's

            await asyncio.wait_for(answered(), 20)
            # While the connection is open its queues are reported.
            assert ("aioudf_backlog_requests", frozenset({"task": "t", "node": "n"}.items())) in (
                samples := await scrape(server)
            )
            assert value(samples, "aioudf_connections_open") >= 1
            await task.stop()
        # Once it is closed, they are not.
        await asyncio.wait_for(server._idle.wait(), 20)
        samples = await scrape(server)
        assert ("aioudf_backlog_requests", frozenset({"task": "t", "node": "n"}.items())) not in (
            samples
        )


async def test_endpoint_answers_only_metrics(echo_server: UnixServer) -> None:
    assert echo_server.metrics_endpoint is not None
    port = echo_server.metrics_endpoint.port
    assert (await http_get(port, "/"))[0] == 404
    assert (await http_get(port, "/metrics", "POST"))[0] == 405
    status, body = await http_get(port, "/metrics", "HEAD")
    assert (status, body) == (200, b"")


async def test_address_in_use_is_one_clear_error(socket_path: Path, short_tmp: Path) -> None:
    async with UnixServer(Fails, socket_path, metrics="127.0.0.1:0") as first:
        assert first.metrics_endpoint is not None
        taken = f"127.0.0.1:{first.metrics_endpoint.port}"
        second = UnixServer(Fails, short_tmp / "other.sock", metrics=taken)
        with pytest.raises(AioudfError, match=f"cannot serve metrics on {taken}: "):
            await second.start()
        assert not (short_tmp / "other.sock").exists()


def test_addresses() -> None:
    assert parse_address("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_address("[::1]:9108") == ("::1", 9108)
    assert parse_address(":9108") == ("0.0.0.0", 9108)
    for bad in ("9108", "host:", "host:port", "h:70000"):
        with pytest.raises(AioudfError, match="expected HOST:PORT"):
            parse_address(bad)


def test_metrics_without_prometheus_client_name_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MetricsUnavailable, match=r"pip install 'aioudf\[metrics\]'"):
        Metrics()


def test_cli_without_prometheus_client_is_one_line(
    python_env: dict[str, str], short_tmp: Path
) -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None; from aioudf.cli import cli; "
        "sys.exit(cli(sys.argv[1:]))"
    )
    args = ["serve", "udf_handlers:Fails", "--socket", str(short_tmp / "s.sock")]
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "--metrics", "127.0.0.1:0"],
        capture_output=True,
        env=python_env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        "aioudf serve: error: metrics need the prometheus_client package: "
        "pip install 'aioudf[metrics]'"
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_address_in_use_is_one_line(
    python_env: dict[str, str], short_tmp: Path, workers: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        serve = [sys.executable, "-m", "aioudf", "serve", "udf_handlers:Fails"]
        flags = ["--workers", workers, "--metrics", f"127.0.0.1:{port}"]
        done = subprocess.run(
            [*serve, "--socket", str(short_tmp / "s.sock"), *flags],
            capture_output=True,
            env=python_env,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stderr.decode().splitlines()[-1:] == [
        f"aioudf serve: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    ]
    assert "Traceback" not in done.stderr.decode()


def test_the_shared_directory_is_found_from_the_socket_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An independent `aioudf serve --takeover` finds the directory of the
    # server it takes over from: its counters carry on.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert aioudf.serving._metrics.shared_dir("/run/udf/a.sock") == "/run/udf/a.sock.metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/var/lib/udf-metrics")
    assert aioudf.serving._metrics.shared_dir("/run/udf/a.sock") == "/var/lib/udf-metrics"


def test_main_refuses_metrics_for_a_process_udf(python_env: dict[str, str]) -> None:
    code = "import aioudf, udf_handlers; aioudf.main(udf_handlers.Fails)"
    done = subprocess.run(
        [sys.executable, "-c", code, "--metrics", ":9108"],
        capture_output=True,
        env=python_env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--metrics needs --socket" in done.stderr.decode()


SERVE_POINTS = """
import asyncio, sys
from aioudf import UnixServer
from aioudf.serving._metrics import Metrics
from aioudf.testing import DataPoint, Kapacitor
from udf_handlers import Fails

async def main(path: str, n: int) -> None:
    async with UnixServer(Fails, path, metrics=Metrics()):
        points = [DataPoint("cpu", {"v": 1.0}, time=t + 1) for t in range(n)]
        await Kapacitor(path).run({"in": "nowhere"}, points=points, task_id="t", node_id="n")

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

EXPORT = """
import sys
from aioudf.serving._metrics import Metrics, use_multiprocess_dir
use_multiprocess_dir(sys.argv[1], fresh=False)
metrics = Metrics()
metrics.handover("t", "n")
sys.stdout.write(metrics.render().decode())
"""


def test_counters_continue_across_processes_sharing_a_directory(
    python_env: dict[str, str], short_tmp: Path
) -> None:
    # What a hand-over or a worker's restart looks like to the metrics: the
    # task's connection served by one process, then by another. With one
    # multiprocess directory, the exporting process sums both.
    directory = short_tmp / "metrics"
    directory.mkdir()
    env = {**python_env, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    for n in (300, 45):
        subprocess.run(
            [sys.executable, "-c", SERVE_POINTS, str(short_tmp / "s.sock"), str(n)],
            env=env,
            check=True,
            timeout=60,
        )
    done = subprocess.run(
        [sys.executable, "-c", EXPORT, str(directory)],
        env=python_env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    samples = parse(done.stdout.decode())
    assert value(samples, "aioudf_points_received_total", task="t", node="n") == 345
    assert value(samples, "aioudf_points_emitted_total", task="t", node="n") == 345
    assert value(samples, "aioudf_handovers_total", task="t", node="n") == 1
    assert value(samples, "aioudf_connections_open") == 0  # both processes' connections closed
    # The exporting process's own standard metrics and the build, once each.
    assert value(samples, "aioudf_build_info", version=aioudf.__version__) == 1
    assert value(samples, "process_resident_memory_bytes") > 0
    assert done.stdout.decode().count("\nprocess_open_fds ") == 1


def test_every_exported_metric_is_documented() -> None:
    # The reverse of the real-Kapacitor test (every documented metric is in a
    # scrape): nothing is exported that docs/observability.md does not explain.
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(Metrics().render().decode())
        if not family.name.endswith("_created")  # a counter's creation time, read as a family
    }
    assert exported - documented_metrics() == set()


async def test_the_endpoint_socket_moves_with_a_takeover(socket_path: Path) -> None:
    async with UnixServer(Fails, socket_path, metrics="127.0.0.1:0") as old:
        assert old.metrics_endpoint is not None
        port = old.metrics_endpoint.port
        # The old server still listens on the port: binding it would fail;
        # the new one serves the socket handed over.
        new = UnixServer(Fails, socket_path, metrics=f"127.0.0.1:{port}")
        await new.start(takeover=True)
        try:
            assert old.handed_over.is_set()
            assert new.metrics_endpoint is not None and new.metrics_endpoint.port == port
            assert (await http_get(port, "/metrics"))[0] == 200
        finally:
            await new.shutdown()


async def test_an_endpoint_handed_another_address_serves_its_own() -> None:
    handed = socket.create_server(("127.0.0.1", 0))
    with socket.create_server(("127.0.0.1", 0)) as probe:
        wanted = probe.getsockname()[1]
    endpoint = MetricsEndpoint(Metrics(), "127.0.0.1", wanted)
    await endpoint.start(handed)
    try:
        assert handed.fileno() == -1  # closed: not ours
        assert endpoint.port == wanted
        assert (await http_get(wanted, "/metrics"))[0] == 200
    finally:
        await endpoint.close()


async def test_a_scrape_accepted_before_close_is_answered_before_close_returns() -> None:
    # A hand-over or shutdown closes the endpoint; a scrape the old process
    # had already accepted must get its answer, not a closed connection.
    accepted = asyncio.Event()

    class Watched(MetricsEndpoint):
        async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            await super()._serve(reader, writer)

    endpoint = Watched(Metrics(), "127.0.0.1", 0)
    await endpoint.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    writer.write(b"GET /metrics HTTP/1.1\r\n")  # the head is not complete yet
    await writer.drain()
    await accepted.wait()
    closing = asyncio.ensure_future(endpoint.close())
    await asyncio.sleep(0)  # one pass of the loop: close() has stopped accepting
    assert not closing.done()  # and waits for the request it accepted
    writer.write(b"Host: x\r\n\r\n")
    await writer.drain()
    await closing
    data = await reader.read()
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK")
