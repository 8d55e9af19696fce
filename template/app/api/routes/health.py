"""Health checks for load balancers and orchestrators.

`/health/live` says the process answers (no I/O: restarting it would not help
if the database is down). `/health/ready` says it can serve: the database
answers and its schema is at the revision this code expects, or at one this
code does not know: a newer release's, migrated before its rollout, which the
running version keeps serving through (migrations stay backward compatible).
`/health` is the ready check under the short name.
"""

import asyncio
from functools import cache
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from sqlalchemy import text

from app.api.errors import sqlstate
from app.core.shutdown import Drain
from app.db.session import SessionDep, autocommit_reads

router = APIRouter(prefix="/health", tags=["health"])

ALEMBIC_INI = Path(__file__).resolve().parents[3] / "alembic.ini"
READY_TIMEOUT_SECONDS = 2.0
# Logins the server refuses, by SQLSTATE: mistakes in DATABASE_URL, told without its
# values (the check answers anyone).
REFUSED_LOGINS = {
    "3D000": "its database does not exist",
    "28000": "its role does not exist or may not connect",
    "28P01": "its password is wrong",
}


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str


@cache
def revisions() -> tuple[str | None, frozenset[str]]:
    """The code's migration head and its revisions before it, read once from the scripts.

    Alembic is imported here, not at the top: with Mako it is a sixth of the
    app's import time, which every start of the service, a command or a test
    process would pay for a check that may never run in it.
    """
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(Config(ALEMBIC_INI))
    head = scripts.get_current_head()
    return head, frozenset(script.revision for script in scripts.walk_revisions()) - {head}


@router.get("/live")
async def check_liveness() -> Liveness:
    """The process is up and serving requests."""
    return Liveness()


NOT_READY: dict[int | str, dict[str, Any]] = {
    status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness}
}


@router.get("", responses=NOT_READY, summary="Ready (alias of /health/ready)", name="check_health")
@router.get("/ready", responses=NOT_READY)
async def check_readiness(session: SessionDep, response: Response) -> Readiness:
    """The database answers and its schema is at the code's migration head, or newer.

    Not while the process shuts down: load balancers stop sending it requests.
    """
    if Drain.started:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(status="unavailable", database="not checked: shutting down")
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), autocommit_reads(session):
            revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception as exc:  # noqa: BLE001 (any failure means "not ready", with its reason)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(status="unavailable", database=unready_reason(exc))
    head, older = revisions()
    if revision is None or revision in older:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(
            status="unavailable",
            database=f"at revision {revision}, code expects {head}: run migrations",
        )
    return Readiness(status="ok", database="ok")


def unready_reason(exc: Exception) -> str:
    """Why the database did not answer, as the operator fixes it."""
    if refused := REFUSED_LOGINS.get(sqlstate(exc)):
        return f"DATABASE_URL refused: {refused} ({type(exc).__name__})"
    return f"unreachable ({type(exc).__name__})"
