"""A stand-in for the mail server: it keeps what the app sends (nothing leaves the machine)."""

import re
from collections.abc import Callable
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncConnection

from tests.jobs import run_queued_jobs


class Outbox:
    def __init__(self, connection: Callable[[], AsyncConnection]) -> None:
        self._connection = connection
        self._messages: list[EmailMessage] = []

    async def deliver(self, message: EmailMessage) -> None:
        self._messages.append(message)

    async def messages(self) -> list[EmailMessage]:
        """Everything sent so far, once the e-mail jobs queued in the test's transaction ran."""
        await run_queued_jobs(self._connection())
        return self._messages


def token_in(message: EmailMessage) -> str:
    """The one-time token of the link in an e-mail."""
    match = re.search(r"token=([\w.-]+)", message.get_content())
    assert match, message.get_content()
    return match.group(1)
