"""Users: /me for everyone logged in, /{id} for superusers (fastapi-users' router).

`GET /me` is this module's own, on the one-dependency `CurrentUser`: it is the
most frequent authenticated request there is. fastapi-users' router serves the rest.
"""

from fastapi import APIRouter, status
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from app.api.deps import CurrentUser
from app.core.users import fastapi_users
from app.db.models.user import User
from app.schemas.user import UserRead, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/me",
    response_model=UserRead,
    responses={status.HTTP_401_UNAUTHORIZED: {"description": "Missing token or inactive user."}},
)
async def read_me(user: CurrentUser) -> User:
    """The caller's own account."""
    return user


def serves_read_me(route: BaseRoute) -> bool:
    return isinstance(route, APIRoute) and route.path == "/me" and "GET" in (route.methods or ())


users_router = fastapi_users.get_users_router(UserRead, UserUpdate)
router.include_router(
    APIRouter(routes=[route for route in users_router.routes if not serves_read_me(route)])
)
