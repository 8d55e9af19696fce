"""A stand-in for the mail server: it keeps what the app sends (nothing leaves the machine)."""

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
