"""An SMTP server that accepts every message, after `delay` seconds, and keeps them.

Just enough SMTP for aiosmtplib without TLS: the rendered service's e-mails
cross the network to a third party, so they end here, and tests assert what
was sent and when it arrived.
"""

import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Sink:
    port: int = 0
    delay: float = 0.0
    # (monotonic time of arrival, the message as sent)
    received: list[tuple[float, str]] = field(default_factory=list)


@contextmanager
def smtp_sink(port: int = 0) -> Iterator[Sink]:
    """A sink on `port` (a mail server that comes back where it was), or on a free one."""
    sink = Sink()

    class Session(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(f"{line}\r\n".encode())

        def handle(self) -> None:
            self.reply("220 sink ready")
            for raw in self.rfile:
                command = raw.decode(errors="replace").strip().upper()
                if command.startswith(("EHLO", "HELO")):
                    self.reply("250 sink")
                elif command == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    lines = []
                    for data in self.rfile:
                        if data in {b".\r\n", b".\n"}:
                            break
                        lines.append(data.decode(errors="replace"))
                    time.sleep(sink.delay)
                    sink.received.append((time.monotonic(), "".join(lines)))
                    self.reply("250 queued")
                elif command == "QUIT":
                    self.reply("221 bye")
                    return
                else:  # MAIL FROM, RCPT TO, RSET, NOOP
                    self.reply("250 ok")

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Session)
    server.daemon_threads = True
    sink.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
