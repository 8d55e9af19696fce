"""/api/users: the current user for everyone, any user for superusers."""

import uuid

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models.user import User
from tests.clients import log_in
from tests.factories import DEFAULT_PASSWORD, create_user

ME_URL = "/api/users/me"


def user_url(user_id: object) -> str:
    return f"/api/users/{user_id}"


class TestReadMe:
    async def test_requires_a_session(self, client: AsyncClient) -> None:
        assert (await client.get(ME_URL)).status_code == 401

    async def test_returns_the_user_without_secrets(
        self, user_client: AsyncClient, user: User
    ) -> None:
        response = await user_client.get(ME_URL)

        assert response.status_code == 200
        assert response.json() == {
            "id": response.json()["id"],
            "email": user.email,
            "is_active": True,
            "is_superuser": False,
            "is_verified": True,
        }
        assert str(response.json()["id"]) == str(user.id)

    async def test_deactivated_user_is_logged_out(
        self, user_client: AsyncClient, user: User, session: AsyncSession
    ) -> None:
        user.is_active = False
        await session.flush()

        assert (await user_client.get(ME_URL)).status_code == 401


class TestUpdateMe:
    async def test_changes_the_email_and_asks_for_verification_again(
        self, user_client: AsyncClient
    ) -> None:
        response = await user_client.patch(ME_URL, json={"email": "renamed@example.com"})

        assert response.status_code == 200
        assert response.json()["email"] == "renamed@example.com"
        assert response.json()["is_verified"] is False

    async def test_changes_the_password(self, user_client: AsyncClient, user: User) -> None:
        response = await user_client.patch(ME_URL, json={"password": "another fine passphrase"})

        assert response.status_code == 200
        await log_in(user_client, user.email, "another fine passphrase")

    async def test_cannot_grant_itself_privileges(self, user_client: AsyncClient) -> None:
        response = await user_client.patch(
            ME_URL, json={"is_superuser": True, "is_active": False, "is_verified": False}
        )

        assert response.status_code == 200
        body = response.json()
        assert (body["is_superuser"], body["is_active"], body["is_verified"]) == (
            False,
            True,
            True,
        )

    async def test_weak_password_is_refused(self, user_client: AsyncClient) -> None:
        response = await user_client.patch(ME_URL, json={"password": "short"})

        assert response.status_code == 400
        assert response.json()["detail"]["code"] == "UPDATE_USER_INVALID_PASSWORD"

    async def test_taken_email_is_refused(
        self, user_client: AsyncClient, session: AsyncSession
    ) -> None:
        other = await create_user(session)

        response = await user_client.patch(ME_URL, json={"email": other.email})

        assert response.status_code == 400
        assert response.json()["detail"] == "UPDATE_USER_EMAIL_ALREADY_EXISTS"

    async def test_null_email_is_422(self, user_client: AsyncClient) -> None:
        response = await user_client.patch(ME_URL, json={"email": None})

        assert response.status_code == 422

    async def test_requires_a_session(self, client: AsyncClient) -> None:
        assert (await client.patch(ME_URL, json={})).status_code == 401


class TestUserById:
    async def test_superuser_reads_any_user(
        self, superuser_client: AsyncClient, user: User
    ) -> None:
        response = await superuser_client.get(user_url(user.id))

        assert response.status_code == 200
        assert response.json()["email"] == user.email

    async def test_normal_user_is_forbidden_even_for_itself(
        self, user_client: AsyncClient, user: User, session: AsyncSession
    ) -> None:
        other = await create_user(session)

        for target in (other, user):
            assert (await user_client.get(user_url(target.id))).status_code == 403
            assert (await user_client.patch(user_url(target.id), json={})).status_code == 403
            assert (await user_client.delete(user_url(target.id))).status_code == 403

    async def test_anonymous_is_401(self, client: AsyncClient, user: User) -> None:
        assert (await client.get(user_url(user.id))).status_code == 401

    async def test_unknown_or_malformed_ids_are_404(self, superuser_client: AsyncClient) -> None:
        for user_id in (uuid.uuid4(), 2**31 - 1, 2**31, 10**30, -1, "not-an-id", "1.5"):
            response = await superuser_client.get(user_url(user_id))
            assert response.status_code == 404, user_id

    async def test_superuser_grants_privileges(
        self, superuser_client: AsyncClient, user: User
    ) -> None:
        response = await superuser_client.patch(
            user_url(user.id), json={"is_superuser": True, "is_verified": False}
        )

        assert response.status_code == 200
        assert response.json()["is_superuser"] is True
        assert response.json()["is_verified"] is False

    async def test_superuser_deactivates_a_user(
        self, superuser_client: AsyncClient, client: AsyncClient, user: User
    ) -> None:
        response = await superuser_client.patch(user_url(user.id), json={"is_active": False})

        assert response.status_code == 200
        login = await client.post(
            "/api/auth/login", data={"username": user.email, "password": DEFAULT_PASSWORD}
        )
        assert login.status_code == 400

    async def test_superuser_deletes_a_user(
        self, superuser_client: AsyncClient, user: User
    ) -> None:
        assert (await superuser_client.delete(user_url(user.id))).status_code == 204

        assert (await superuser_client.get(user_url(user.id))).status_code == 404
