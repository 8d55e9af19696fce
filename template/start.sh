#!/usr/bin/env bash
# Start the service on http://localhost:8000: install the locked dependencies,
# make sure the database runs, apply migrations, start one background jobs' worker,
# serve. Ctrl+C stops both.
# Without DATABASE_URL, in development, the database is the project's own
# PostgreSQL in .data/postgres (README, "Database").
set -euo pipefail
cd "$(dirname "$0")"

uv sync --locked
uv run python -m commands.local_postgres start
uv run alembic upgrade head
uv run python -m commands.worker &
worker=$!
# The worker stops when the API does, however it ends (Ctrl+C, or a port in use).
trap 'kill -TERM "$worker" 2>/dev/null || true; wait "$worker" || true' EXIT
uv run fastapi run app/main.py --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
