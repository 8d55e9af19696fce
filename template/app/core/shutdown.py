"""Graceful shutdown under uvicorn: leave the load balancer's rotation, then drain.

On SIGTERM (what Kubernetes, Docker and systemd send), the service first keeps
serving for SHUTDOWN_DELAY_SECONDS while `/api/health/ready` answers 503: a
load balancer or orchestrator that polls it stops sending new requests, and
none of them finds the port closed. Meanwhile every response carries
`Connection: close` (`CloseConnectionsWhenDraining`): a client holding a
kept-alive connection opens a new one for its next request, instead of sending
it on a connection the server is about to close, where it would get a reset.
Then uvicorn stops accepting connections and lets the requests in flight
finish, for at most what SHUTDOWN_GRACE_SECONDS leaves after the delay and a
reserve for the lifespan's shutdown (flushing e-mails, closing the pool). The
process then exits 0: told to stop this way, uvicorn does not re-raise the
signal (which would end the process with 143).

Ctrl-C (SIGINT) still stops at once, as developers expect.
"""

import asyncio
import contextvars
import logging
import signal
from types import FrameType

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn import Server

logger = logging.getLogger(__name__)

# Left of the grace period for the lifespan's shutdown after the requests in
# flight: e-mails still being sent (MAIL_TIMEOUT_SECONDS) and the pool.
SHUTDOWN_RESERVE_SECONDS = 10.0


class Drain:
    """Whether this process has been told to stop: the ready check reads it."""

    started = False


class CloseConnectionsWhenDraining:
    """From SIGTERM on, ask every client to close its connection after the response.

    Decided as each request starts, so that serving costs nothing more until
    SIGTERM: a request in flight then keeps its connection, and the client's next
    request on it is told. uvicorn honours the header: it closes the connection
    once the response is sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not Drain.started:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Connection"] = "close"
            await send(message)

        await self.app(scope, receive, send_closing)


def drain_on_sigterm(delay_seconds: float, grace_seconds: float) -> None:
    """Put the delay in front of uvicorn's own SIGTERM handler (called at start-up).

    Only under uvicorn, in the main thread, where its handler is installed;
    any other server keeps its own behaviour.
    """
    uvicorn_handler = signal.getsignal(signal.SIGTERM)
    server = getattr(uvicorn_handler, "__self__", None)
    if not isinstance(server, Server):
        return
    loop = asyncio.get_running_loop()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if Drain.started:
            return
        Drain.started = True
        # In an empty context: the signal interrupts whatever runs, maybe a request,
        # whose id and trace this line must not carry.
        contextvars.Context().run(
            logger.info,
            "SIGTERM: not ready any more; closing the port in %.0f s, then draining",
            delay_seconds,
        )
        if server.config.timeout_graceful_shutdown is None:
            left = grace_seconds - delay_seconds - SHUTDOWN_RESERVE_SECONDS
            server.config.timeout_graceful_shutdown = max(1, round(left))
        # Thread-safe: a signal handler may run between any two bytecodes of the loop.
        loop.call_soon_threadsafe(loop.call_later, delay_seconds, stop, server)

    signal.signal(signal.SIGTERM, on_sigterm)


def stop(server: Server) -> None:
    """What uvicorn's handler does, without recording a signal to re-raise at exit."""
    server.should_exit = True
