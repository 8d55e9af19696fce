"""Clients on kept-alive connections across SIGTERM: not one error, with one worker and two.

Served the production way (`python -m commands.serve`). From SIGTERM on, every
response carries `Connection: close` (app/core/shutdown.py). These clients do
what a client behind a load balancer would: once told to close, they send this
instance nothing more (their next request would go to another). Without the
header they would go on sending on their kept-alive connections until the
server closed them, and get resets or refused connections: so "no error" holds
only if every client was told before the port closed. Each run lasts until the
server has exited, so it spans the closing of the port.

Two clients: a pooled httpx client per thread, and wrk (its threads stop once a
response says close, from a Lua script).
"""

import json
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.clients import CLIENT_TIMEOUT_SECONDS
from tests.support.project import Project
from tests.support.service import Service, new_secret_keys, serve

# SHUTDOWN_DELAY_SECONDS: the time the clients have to be told, while the port is open.
DELAY_SECONDS = 3.0
GRACE_SECONDS = 30.0
CLIENTS = 4
# Requests each client sends on its connection before SIGTERM: the connections are warm.
WARM_UP_REQUESTS = 20
# Never connected to: /api/health/live needs no database.
NO_DATABASE = "postgresql://nobody@127.0.0.1:9/none"
METRICS_TOKEN = "a-token-for-this-test-only-0123456789"  # noqa: S105 (made up)


def environment(workers: int) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": NO_DATABASE,
        **new_secret_keys(),
        "MAIL_SERVER": "127.0.0.1",
        "METRICS_TOKEN": METRICS_TOKEN,
        "WEB_CONCURRENCY": str(workers),
        "SHUTDOWN_DELAY_SECONDS": str(DELAY_SECONDS),
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
    }


@dataclass
class KeepAliveClient:
    """One pooled connection, one request after the other, until told to close."""

    base_url: str
    requests: int = 0
    connections: int = 0
    told_to_close: bool = False
    errors: list[str] = field(default_factory=list)

    def run(self, give_up: threading.Event) -> None:
        limits = httpx.Limits(max_connections=1)
        with httpx.Client(
            base_url=self.base_url, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits
        ) as http:
            while not self.told_to_close and not give_up.is_set():
                try:
                    response = http.get("/api/health/live", extensions={"trace": self.trace})
                except httpx.TransportError as exc:
                    self.errors.append(repr(exc))
                    return
                self.requests += 1
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code} {response.text}")
                self.told_to_close = response.headers.get("connection") == "close"

    def trace(self, event: str, info: dict[str, object]) -> None:
        """httpcore's account of each request: here, the connections it opened."""
        if event == "connection.connect_tcp.complete":
            self.connections += 1


def stop_and_wait(service: Service) -> int:
    service.process.send_signal(signal.SIGTERM)
    return service.process.wait(timeout=GRACE_SECONDS)


@pytest.mark.parametrize("workers", [1, 2])
def test_pooled_clients_are_told_to_close_and_meet_no_error(
    project: Project, tmp_path: Path, workers: int
) -> None:
    give_up = threading.Event()
    log = tmp_path / "serve.log"
    with serve(project, environment(workers), log, production=True) as service:
        clients = [KeepAliveClient(service.base_url) for _ in range(CLIENTS)]
        with ThreadPoolExecutor(CLIENTS) as pool:
            running = [pool.submit(client.run, give_up) for client in clients]
            try:
                while min(client.requests for client in clients) < WARM_UP_REQUESTS:
                    assert not any(future.done() for future in running), clients
                    time.sleep(0.05)
                assert stop_and_wait(service) == 0, service.output()
            finally:
                give_up.set()  # Only matters when an assertion failed above.
            for future in running:
                future.result()

    # Each worker's SIGTERM line, logged while requests were in flight, names none of them.
    stopping = [
        entry
        for entry in map(json.loads, log.read_text().splitlines())
        if entry["message"].startswith("SIGTERM: not ready")
    ]
    assert [entry["request_id"] for entry in stopping] == ["-"] * workers
    for client in clients:
        assert client.errors == []
        assert client.told_to_close
        # Kept alive: one connection for the warm-up, maybe one more after SIGTERM
        # (a request in flight as the signal came), never one per request.
        assert client.connections <= 2 < client.requests, client


# wrk's Lua: each thread stops once a response says close; at the end, what wrk counted.
WRK_SCRIPT = """
closed = false
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if headers["connection"] == "close" or headers["Connection"] == "close" then
    closed = true
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local told = 0
  for _, thread in ipairs(threads) do
    if thread:get("closed") then told = told + 1 end
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d, '
      .. '"status": %d, "threads": %d, "told": %d}\\n',
    summary.requests, errors.connect, errors.read, errors.write, errors.timeout,
    errors.status, #threads, told))
end
"""


def requests_counted(service: Service) -> float:
    """The live checks counted so far, by every worker (Prometheus's text format)."""
    response = httpx.get(
        f"{service.base_url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    series = 'http_requests_total{method="GET",route="/api/health/live",status="2xx"}'
    lines = [line for line in response.text.splitlines() if line.startswith(series)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


@pytest.mark.parametrize("workers", [1, 2])
def test_wrk_is_told_to_close_and_meets_no_socket_error(
    project: Project, tmp_path: Path, workers: int
) -> None:
    script = tmp_path / "close.lua"
    script.write_text(WRK_SCRIPT)
    log = tmp_path / "serve.log"
    with serve(project, environment(workers), log, production=True) as service:
        wrk = subprocess.Popen(
            [
                *("wrk", "--threads", "2", "--connections", "8", "--duration", "120s"),
                *("--script", str(script), f"{service.base_url}/api/health/live"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            while requests_counted(service) < 200:
                assert wrk.poll() is None, wrk.communicate()[0]
                time.sleep(0.1)
            assert stop_and_wait(service) == 0, service.output()
        finally:
            # Like Ctrl+C: wrk stops and reports, once the server has gone.
            wrk.send_signal(signal.SIGINT)
            output = wrk.communicate(timeout=30)[0]

    [summary] = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert summary["requests"] >= 200, output
    assert summary["told"] == summary["threads"] == 2, output
    errors = {name: summary[name] for name in ("connect", "read", "write", "timeout", "status")}
    assert errors == dict.fromkeys(errors, 0), output
