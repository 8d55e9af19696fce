"""Create a superuser: `uv run python -m commands.create_superuser [EMAIL]`.

The password comes from the SUPERUSER_PASSWORD environment variable or a prompt,
never from the command line, where shell history and `ps` would keep it.
"""

import argparse
import asyncio
import getpass
import os
import sys

from fastapi_users.exceptions import InvalidPasswordException, UserAlreadyExists
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

import app.db.base  # noqa: F401 (every model: relationships resolve other models by name)
from app.core.config import settings
from app.core.user_manager import user_manager_on
from app.db.models.user import User
from app.db.session import database_for_command
from app.schemas.user import UserCreate


async def create_superuser(session: AsyncSession, email: str, password: str) -> User:
    """Create an active, verified superuser through the user manager (same rules as the API)."""
    user_manager = user_manager_on(session)
    user_create = UserCreate(email=email, password=password, is_superuser=True, is_verified=True)
    return await user_manager.create(user_create)


async def main(email: str, password: str) -> int:
    try:
        async with database_for_command(settings) as database, database.sessions() as session:
            user = await create_superuser(session, email, password)
    except UserAlreadyExists:
        print(f"A user with e-mail {email} already exists.", file=sys.stderr)
        return 1
    except InvalidPasswordException as exc:
        print(f"Password refused: {exc.reason}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"Invalid input: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 1
    print(f"Superuser {user.email} created (id {user.id}).")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("email", nargs="?", help="e-mail address (asked for when left out)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    email = args.email or input("E-mail: ")
    password = os.environ.get("SUPERUSER_PASSWORD") or getpass.getpass("Password: ")
    sys.exit(asyncio.run(main(email, password)))
