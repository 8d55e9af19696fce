"""/api/health: liveness without I/O, readiness with the database and its revision."""

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.shutdown import Drain

# Read here, not from app/api/routes/health.py: the revisions the check must refuse.
SCRIPTS = ScriptDirectory.from_config(Config(Path(__file__).resolve().parents[1] / "alembic.ini"))
HEAD = SCRIPTS.get_current_head()
OLDER_REVISIONS = [script.revision for script in SCRIPTS.walk_revisions()][1:]


class TestLive:
    async def test_is_ok(self, client: AsyncClient) -> None:
        response = await client.get("/api/health/live")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestReady:
    async def test_is_503_once_shutdown_started_while_live_stays_ok(
        self, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SIGTERM (app/core/shutdown.py): load balancers stop sending requests."""
        monkeypatch.setattr(Drain, "started", True)

        response = await client.get("/api/health/ready")

        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "database": "not checked: shutting down",
        }
        assert (await client.get("/api/health/live")).status_code == 200

    async def test_is_ok_with_a_migrated_database(self, client: AsyncClient) -> None:
        for url in ("/api/health/ready", "/api/health"):
            response = await client.get(url)
            assert response.status_code == 200
            assert response.json() == {"status": "ok", "database": "ok"}

    async def test_is_503_when_migrations_are_missing(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        await session.execute(text("DELETE FROM alembic_version"))

        response = await client.get("/api/health/ready")

        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert "at revision None" in response.json()["database"]
        assert response.json()["database"].endswith(": run migrations")

    @pytest.mark.parametrize("revision", OLDER_REVISIONS)
    async def test_is_503_at_every_revision_before_head(
        self, client: AsyncClient, session: AsyncSession, revision: str
    ) -> None:
        await session.execute(
            text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision}
        )

        response = await client.get("/api/health/ready")

        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "database": f"at revision {revision}, code expects {HEAD}: run migrations",
        }

    def test_the_migrations_have_revisions_before_head(self) -> None:
        # Else the test above would check nothing.
        assert OLDER_REVISIONS
        assert HEAD not in OLDER_REVISIONS

    async def test_is_ok_at_a_newer_release_revision_migrated_before_its_rollout(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        # Migrate, then roll: this version keeps serving until its pods are replaced.
        await session.execute(text("UPDATE alembic_version SET version_num = 'newer'"))

        response = await client.get("/api/health/ready")

        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok"}

    @pytest.mark.usefixtures("unreachable_database")
    async def test_is_503_when_the_database_is_unreachable(self, client: AsyncClient) -> None:
        response = await client.get("/api/health")

        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "database": "unreachable (ConnectionRefusedError)",
        }

    async def test_is_503_with_the_reason_when_the_server_refuses_the_login(
        self, client: AsyncClient, wrong_database_url: str
    ) -> None:
        response = await client.get("/api/health/ready")

        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "database": {
                "no-such-database": "DATABASE_URL refused: its database does not exist "
                "(InvalidCatalogNameError)",
                "no-such-role": "DATABASE_URL refused: its role does not exist or may not "
                "connect (InvalidAuthorizationSpecificationError)",
            }[wrong_database_url],
        }
