"""The two sides of an update: the template's next release, and a user's own changes.

`next_release` turns a snapshot of the template into a plausible next version:
a new table with its migration, a new setting, an edited route, a renamed
question (whose default carries the old answer over), a removed question, and
an edited file that the user deleted. `change_project`
makes the changes a team makes to its service in the meantime. Some of them
touch the same files as the release on different lines (they must merge
silently); one touches the same line (it must conflict, and say so).

Every edit names the text it replaces and fails if that text is gone, so that
a change to the template breaks this scenario loudly instead of emptying it.
"""

import re
from pathlib import Path

from tests.conftest import git

OLD_VERSION = "0.1.0"
NEW_VERSION = "0.2.0"
# A patch release of the old version that only adds a dependency.
DEPENDENCY_VERSION = "0.1.1"

# The answers that choose the project's pre-resolved lock (locks/).
LOCK_VARIANT = {"python_version": "3.12", "oauth_providers": [], "email_backend": "console"}
# Answers of the project rendered from the old version: no Docker (the answer
# that an update later turns on), and a non-default value for the question
# the new version renames, so that losing it on the way would show.
ANSWERS = {"project_name": "Billing API", "docker": False, **LOCK_VARIANT}

AUDIT_MODEL = '''"""Audit events: what happened, kept for AUDIT_RETENTION_DAYS."""

from datetime import datetime

from sqlalchemy import String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models.base import Base


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
'''

AUDIT_MIGRATION_NAME = "2026_12_01_0000-0002_audit_events.py"
AUDIT_MIGRATION = '''"""Audit events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_created_at"), "audit_events", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_events_created_at"), table_name="audit_events")
    op.drop_table("audit_events")
'''

RETENTION_SETTING = "    AUDIT_RETENTION_DAYS: int = Field(default=90, gt=0)\n"
TEMPLATE_HEALTH_TAGS = 'tags=["health", "monitoring"]'
USER_HEALTH_TAGS = 'tags=["ops"]'
PRE_COMMIT_RELEASE_LINE = "# Run them all once: `uvx pre-commit run --all-files`.\n"
RENAMED_DEFAULT = """  default: "{{ email_backend | default('smtp') }}"\n"""


USER_MODEL = '''"""Tags that our team puts on invoices."""

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models.base import Base


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
'''
USER_LOGIN_LIFETIME = "ACCESS_TOKEN_EXPIRE_SECONDS: int = Field(default=900, gt=0)"
USER_PAGE_SIZE = "limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,"
USER_DEPENDENCY = "anyio"
TEMPLATE_DEPENDENCY = "python-dotenv"


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: expected exactly one {old!r} to replace"
    path.write_text(text.replace(old, new))


def tag(repository: Path, version: str) -> None:
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "--allow-empty", "-m", f"Release {version}")
    git(repository, "tag", version)


def next_release(template: Path) -> None:
    """Turn the template repository's working tree into its next version."""
    source = template / "template"
    # A new table: its model, its migration (revised on the template's last), its import.
    (source / "app/db/models/audit_event.py").write_text(AUDIT_MODEL)
    (source / "alembic_migrations/versions" / AUDIT_MIGRATION_NAME).write_text(AUDIT_MIGRATION)
    base = source / "app/db/base.py.jinja"
    replace_once(
        base,
        "from app.db.models.base import Base\n",
        "from app.db.models.audit_event import AuditEvent\nfrom app.db.models.base import Base\n",
    )
    replace_once(base, '    "Base",\n', '    "AuditEvent",\n    "Base",\n')
    # A new setting, far from the ones a user edits.
    replace_once(
        source / "app/core/config.py.jinja",
        "    MAX_REQUEST_BODY_BYTES: int = Field(default=1_048_576, gt=0)\n",
        "    MAX_REQUEST_BODY_BYTES: int = Field(default=1_048_576, gt=0)\n" + RETENTION_SETTING,
    )
    # An edited route, on the line the user edits too.
    replace_once(source / "app/api/routes/health.py", 'tags=["health"]', TEMPLATE_HEALTH_TAGS)
    # A removed question: pre-commit is no longer optional, and its file changes.
    copier_yml = template / "copier.yml"
    text = copier_yml.read_text()
    assert re.search(r"^pre_commit:\n(?:  .*\n)+\n", text, flags=re.MULTILINE)
    copier_yml.write_text(re.sub(r"^pre_commit:\n(?:  .*\n)+\n", "", text, flags=re.MULTILINE))
    pre_commit = source / "{% if pre_commit %}.pre-commit-config.yaml{% endif %}"
    pre_commit.rename(source / ".pre-commit-config.yaml")
    replace_once(
        source / ".pre-commit-config.yaml",
        "repos:\n",
        PRE_COMMIT_RELEASE_LINE + "repos:\n",
    )
    # A renamed question. The answer's name only, not words that contain it (a
    # rendered test is named `..._console_email_backend`).
    name = re.compile(r"(?<!\w)email_backend(?!\w)")
    for path in [copier_yml, *source.rglob("*")]:
        if path.is_file() and name.search(path.read_text()):
            path.write_text(name.sub("mail_backend", path.read_text()))
    # Copier keeps every recorded answer in the context of the questions, the
    # ones no question asks any more too: the new question defaults to the old answer.
    replace_once(copier_yml, "  default: smtp\n", RENAMED_DEFAULT)


def add_dependency(template: Path) -> None:
    """The dependency release's change: one more runtime dependency (its locks are not redone)."""
    pyproject = template / "template/pyproject.toml.jinja"
    text = pyproject.read_text()
    anchor = re.search(r'^    "pydantic-settings>=.*\n', text, flags=re.MULTILINE)
    assert anchor, f"{pyproject}: no pydantic-settings dependency to add a line after"
    line = f'    "{TEMPLATE_DEPENDENCY}>=1",\n'
    pyproject.write_text(text[: anchor.end()] + line + text[anchor.end() :])


def change_project(project: Path) -> None:
    """A team's own changes: a route, a setting, a model, a deleted file (not committed)."""
    replace_once(
        project / "app/api/routes/posts.py",
        "limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,",
        USER_PAGE_SIZE,
    )
    replace_once(project / "app/api/routes/health.py", 'tags=["health"]', USER_HEALTH_TAGS)
    replace_once(
        project / "app/core/config.py",
        "ACCESS_TOKEN_EXPIRE_SECONDS: int = Field(default=3600, gt=0)",
        USER_LOGIN_LIFETIME,
    )
    (project / "app/db/models/tag.py").write_text(USER_MODEL)
    base = project / "app/db/base.py"
    replace_once(
        base,
        "from app.db.models.user import User\n",
        "from app.db.models.tag import Tag\nfrom app.db.models.user import User\n",
    )
    replace_once(base, '    "User",\n', '    "Tag",\n    "User",\n')
    (project / ".pre-commit-config.yaml").unlink()
