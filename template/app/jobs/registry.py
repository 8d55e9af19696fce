"""The jobs the worker runs, by name: add a job here to have it run.

The name is what the queue stores, so it outlives the code: a renamed or
removed job leaves its queued rows behind, which the worker fails with a
message that names them instead of waiting for them forever.
"""

from collections.abc import Awaitable, Callable

from app.jobs import emails
from app.jobs.queue import JobRun

JobFunction = Callable[[JobRun], Awaitable[None]]

JOBS: dict[str, JobFunction] = {
    emails.SEND_VERIFICATION_EMAIL: emails.send_verification_email,
    emails.SEND_PASSWORD_RESET_EMAIL: emails.send_password_reset_email,
}
