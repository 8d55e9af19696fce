"""A stand-in for the mail server: it keeps what the app sends (nothing leaves the machine)."""

import re
from email.message import EmailMessage

from app.core import email


class Outbox:
    def __init__(self) -> None:
        self._messages: list[EmailMessage] = []

    async def deliver(self, message: EmailMessage) -> None:
        self._messages.append(message)

    async def messages(self) -> list[EmailMessage]:
        """Everything sent so far, once the background sends have finished."""
        await email.wait_for_background_sends()
        return self._messages


def token_in(message: EmailMessage) -> str:
    """The one-time token of the link in an e-mail."""
    match = re.search(r"token=([\w.-]+)", message.get_content())
    assert match, message.get_content()
    return match.group(1)
