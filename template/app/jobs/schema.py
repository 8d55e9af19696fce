"""The queue's tables: PgQueuer's, made by a migration (0003), not described by models.

Alembic compares the models with the database (`alembic check`, autogenerate):
without this filter it would propose dropping the tables it does not know.
"""

from typing import Any

QUEUE_TABLES = frozenset({"pgqueuer", "pgqueuer_log", "pgqueuer_schedules", "pgqueuer_statistics"})


def described_by_models(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's `include_object`: everything but the queue's tables."""
    return not (type_ == "table" and name in QUEUE_TABLES)
