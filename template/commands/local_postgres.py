"""The project's own PostgreSQL: `uv run python -m commands.local_postgres start|stop`.

./start.sh runs `start` first. In development without DATABASE_URL it starts
the server of .data/postgres, or finds it running; with DATABASE_URL it starts
nothing and says which database the service will use. The server keeps
running after the service stops; `stop` stops it, and its data stays.
"""

import argparse
import shlex
import sys

from sqlalchemy import make_url

from app.core.config import settings
from app.db import local_postgres


def start() -> int:
    if settings.DATABASE_URL is not None:
        url = make_url(str(settings.DATABASE_URL)).render_as_string(hide_password=True)
        print(f"Database: DATABASE_URL, {url} (the local PostgreSQL is not used)")
        return 0
    if settings.ENVIRONMENT != "development":
        print(
            f"error: ENVIRONMENT is {settings.ENVIRONMENT}: the local PostgreSQL is for "
            "development only. Set DATABASE_URL.",
            file=sys.stderr,
        )
        return 1
    was_running = local_postgres.running(local_postgres.DATA_DIR) is not None
    server = local_postgres.start(local_postgres.DATA_DIR)
    host = str(server.socket_dir or server.host)
    connect = shlex.join(["psql", "-h", host, "-p", str(server.port), "-U", "postgres"])
    print(
        f"Database: the local PostgreSQL {server.major_version} in {server.data_dir}, "
        f"{'already running' if was_running else 'started'} (connect: {connect})"
    )
    return 0


def stop() -> int:
    stopped = local_postgres.stop(local_postgres.DATA_DIR)
    state = "stopped" if stopped else "was not running"
    print(f"The local PostgreSQL in {local_postgres.DATA_DIR} {state}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=["start", "stop"])
    action = {"start": start, "stop": stop}[parser.parse_args(argv).action]
    try:
        return action()
    except local_postgres.LocalPostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
