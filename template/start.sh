#!/usr/bin/env bash
# Start the service on http://localhost:8000: install the locked dependencies,
# apply migrations, serve.
set -euo pipefail
cd "$(dirname "$0")"

uv sync --locked
uv run alembic upgrade head
exec uv run fastapi run app/main.py --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
