"""The e-mail jobs: verification and password-reset mails, sent by the worker only.

The request enqueues the job in its own transaction and answers; the worker
sends, and retries while the mail server is down. A repeat (delivery is at
least once) carries the same Message-ID, made from the job's id, so that it
is recognisable as the same mail.
"""

import logging
import re
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import email
from app.core.config import settings
from app.core.redaction import describe
from app.db.models.user import User
from app.jobs.queue import JobRun, enqueue

SEND_VERIFICATION_EMAIL = "send_verification_email"
SEND_PASSWORD_RESET_EMAIL = "send_password_reset_email"  # noqa: S105 (a name)

logger = logging.getLogger(__name__)


async def enqueue_verification_email(session: AsyncSession, user: User, token: str) -> int:
    return await enqueue(
        session,
        SEND_VERIFICATION_EMAIL,
        {"user_id": str(user.id), "to": user.email, "token": token},
    )


async def enqueue_password_reset_email(session: AsyncSession, user: User, token: str) -> int:
    return await enqueue(
        session,
        SEND_PASSWORD_RESET_EMAIL,
        {"user_id": str(user.id), "to": user.email, "token": token},
    )


def message_id(job_id: int) -> str:
    """The same for every run of the job, unique among the service's mails."""
    domain = settings.MAIL_FROM.rpartition("@")[2]
    service = re.sub(r"[^a-z0-9]+", "-", settings.PROJECT_NAME.lower()).strip("-")
    return f"<job-{job_id}.{service}@{domain}>"


class EmailNotSentError(Exception):
    """A failed delivery, said by the user's id: the queue keeps this text, and the
    logs show it, where addresses must not appear (the token never does).
    """


async def send(run: JobRun, message: EmailMessage) -> None:
    message["Message-ID"] = message_id(run.id)
    recipient = f"user {run.args['user_id']}"
    try:
        await email.send_email(message)
    except Exception as exc:  # noqa: BLE001 (whatever the mail server or the network did)
        detail = describe(exc).replace(run.args["to"], recipient)
        raise EmailNotSentError(
            f"Could not send {message['Subject']!r} to {recipient}: {type(exc).__name__}: {detail}"
        ) from None
    # The user's id says who got which mail; not the address (logs name users by id).
    logger.info("Sent %r to user %s", message["Subject"], run.args["user_id"])


async def send_verification_email(run: JobRun) -> None:
    await send(run, email.verification_message(run.args["to"], run.args["token"]))


async def send_password_reset_email(run: JobRun) -> None:
    await send(run, email.password_reset_message(run.args["to"], run.args["token"]))
