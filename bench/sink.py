"""A local OTLP sink: where the traced service exports its spans during the benchmark.

It answers every export at once and keeps only a count, so that tracing's cost
is the service's own (building, batching and sending spans), not a collector's.
The template's tests receive with it too, keeping what was sent (`keep=True`).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OtlpSink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, keep: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.exports = 0
        self.keep = keep
        # Each export's path, content type and body, when kept.
        self.requests: list[tuple[str, str, bytes]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: OtlpSink
    # Keep-alive, as a collector offers: the exporter reuses its connection.
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.exports += 1
        if self.server.keep:
            self.server.requests.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def otlp_sink(keep: bool = False) -> Iterator[OtlpSink]:
    sink = OtlpSink(keep)
    thread = threading.Thread(target=sink.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.shutdown()
        sink.server_close()
