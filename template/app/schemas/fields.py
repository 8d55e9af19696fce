"""Constraints and validators shared by the schemas."""

from typing import Annotated

from pydantic import WithJsonSchema

# PostgreSQL text cannot hold NUL characters: refuse them as bad input (422)
# instead of letting the database driver fail on them (500).
NUL_FREE_PATTERN = r"^[^\x00]*$"

# An address read back from the users table, validated when it was stored: not
# validated again on the way out, where email-validator's check would cost more than
# the query it answers. Documented as an e-mail address all the same.
StoredEmail = Annotated[str, WithJsonSchema({"type": "string", "format": "email"})]


def reject_null[T](value: T | None) -> T:
    """For PATCH bodies: a field may be left out, but not set to null."""
    if value is None:
        raise ValueError("may be omitted, but not null")
    return value
