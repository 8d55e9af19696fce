#!/usr/bin/env bash
# Start the service on http://localhost:8000: install the locked dependencies,
# make sure the database runs, apply migrations, start one background jobs' worker,
# serve. Ctrl+C stops both (the terminal signals the whole process group).
# Without DATABASE_URL, in development, the database is the project's own
# PostgreSQL in .data/postgres (README, "Database").
set -euo pipefail
cd "$(dirname "$0")"

uv sync --locked
uv run python -m commands.local_postgres start
uv run alembic upgrade head
uv run python -m commands.worker &
exec uv run fastapi run app/main.py --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
