"""Serve the API as production does: `python -m commands.serve` (the image's command).

uvicorn, started from here rather than from its own command line, so that it
reads its settings where the app reads its own (`HOST`, `PORT`,
`WEB_CONCURRENCY` workers, `FORWARDED_ALLOW_IPS`: app/core/config.py), and so
that every line it logs, its supervisor process's included when there are
several workers, goes through the service's logging: JSON lines in production.

With several workers, each process counts its own metrics and prometheus-client
adds them up in a folder they share (app/observability/metrics.py): the one
`PROMETHEUS_MULTIPROC_DIR` names, or else a new temporary folder (under
`TMPDIR`, `/tmp` by default) made for this run and removed when it ends.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from app.core.config import Settings, settings
from app.core.logging import configure_logging, logging_config


@contextmanager
def metrics_folder(settings: Settings) -> Iterator[None]:
    """The workers' shared metrics folder, in the environment where prometheus-client
    reads it as each worker imports it (a setting from `.env` included).
    """
    if settings.PROMETHEUS_MULTIPROC_DIR is not None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = settings.PROMETHEUS_MULTIPROC_DIR
        yield
        return
    if settings.WEB_CONCURRENCY == 1:
        yield  # One process: its own registry is the whole count.
        return
    folder = tempfile.mkdtemp(prefix="prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def serve(settings: Settings) -> None:
    """Run uvicorn until it is told to stop (SIGTERM drains first: app/core/shutdown.py)."""
    configure_logging(settings.LOG_LEVEL, settings.log_format)
    with metrics_folder(settings):
        uvicorn.run(
            "app.main:app",
            host=settings.HOST,
            port=settings.PORT,
            workers=settings.WEB_CONCURRENCY,
            proxy_headers=True,
            forwarded_allow_ips=settings.FORWARDED_ALLOW_IPS,
            # Applied again by uvicorn in each worker, and by the app as it starts.
            log_config=logging_config(settings.LOG_LEVEL, settings.log_format),
            # RequestLogMiddleware writes the access line, with the request id.
            access_log=False,
        )


if __name__ == "__main__":
    serve(settings)
