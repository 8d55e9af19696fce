"""Enqueueing a job in the caller's transaction, and what a job gets when it runs.

`enqueue` inserts the job through the session's own connection, inside its
transaction: the job exists exactly when the changes that asked for it are
committed (a registration's user and its verification e-mail), and a rolled-back
request leaves none. Behind PgBouncer's transaction pooling this is one more
INSERT in a transaction, which it serves as any other.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate
from pgqueuer import Queries
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import Database
from app.observability.job_metrics import JOBS_ENQUEUED


class JobArgumentsError(TypeError):
    """A job's arguments that the queue cannot store: a bug in the caller, said at once."""


@dataclass(frozen=True)
class JobRun:
    """One run of a job: what the job function gets.

    Delivery is at least once: a run may repeat (a worker killed after the work,
    before the queue heard of it), so a job does its work idempotently or makes a
    repeat recognisable, as the e-mails do with a Message-ID made from `id`.
    """

    id: int
    name: str
    args: dict[str, Any]
    # 1 on the first run, 2 on the first retry, ...
    attempt: int
    database: Database


def encode(name: str, args: Mapping[str, Any]) -> bytes:
    """`args` as JSON, or JobArgumentsError naming the job."""
    try:
        return json.dumps(args, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise JobArgumentsError(
            f"The arguments of job {name!r} must be JSON (str, int, float, bool, None,"
            f" lists and dicts of them): {exc}"
        ) from None


def decode(payload: bytes | None) -> dict[str, Any]:
    args: dict[str, Any] = json.loads(payload) if payload else {}
    return args


async def enqueue(session: AsyncSession, name: str, args: Mapping[str, Any]) -> int:
    """Add the job `name` with `args` to the queue in `session`'s transaction; its id.

    Nothing runs it before the transaction commits. The current trace's context
    goes along, so that the job's span joins the trace of the request.
    """
    payload = encode(name, args)
    headers: dict[str, str] = {}
    propagate.inject(headers)
    connection = await (await session.connection()).get_raw_connection()
    queries = Queries.from_asyncpg_connection(connection.driver_connection)
    [job_id] = await queries.enqueue(name, payload, headers=headers or None)
    JOBS_ENQUEUED.labels(name).inc()
    return int(job_id)
