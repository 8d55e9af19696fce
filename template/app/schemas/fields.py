"""Constraints and validators shared by the schemas."""

# PostgreSQL text cannot hold NUL characters: refuse them as bad input (422)
# instead of letting the database driver fail on them (500).
NUL_FREE_PATTERN = r"^[^\x00]*$"


def reject_null[T](value: T | None) -> T:
    """For PATCH bodies: a field may be left out, but not set to null."""
    if value is None:
        raise ValueError("may be omitted, but not null")
    return value
