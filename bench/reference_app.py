"""The benchmark issue's reference points, served on this machine beside the rendered app.

The issue compares the service with a bare FastAPI endpoint and with one raw
asyncpg query per request, measured on "this kind of machine". Those figures
move with the machine and the hour (bench/README.md); served here in the
same run, under the same uvicorn flags and wrk load, they say what this machine
allowed at that moment. Ceilings, not alternatives: no authentication, no ORM,
no access line.

Run by the rendered project's interpreter (its FastAPI, uvicorn and asyncpg),
never imported by the benchmark itself.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request

# What GET /api/users/me reads, by the same id: the first benchmark user.
USER_ROW = "SELECT id, email, is_active, is_superuser, is_verified FROM users WHERE id = $1"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # As many connections as wrk opens, like the rendered app's pool.
    size = int(os.environ["REFERENCE_POOL_SIZE"])
    url = os.environ["REFERENCE_DATABASE_URL"]
    async with asyncpg.create_pool(url, min_size=size, max_size=size) as pool:
        app.state.pool = pool
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/bare")
async def bare() -> dict[str, bool]:
    return {"ok": True}


@app.get("/raw")
async def raw(request: Request) -> dict[str, Any]:
    row = await request.app.state.pool.fetchrow(USER_ROW, 1)
    return dict(row)
