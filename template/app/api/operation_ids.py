"""The operation ids of the OpenAPI contract: what generated clients name their functions.

FastAPI's own ids join the route's name, path and method
(`auth_jwt_login_api_auth_login_post`), and client generators
(openapi-python-client, @hey-api/openapi-ts) name each function after its id.
These ids read as names instead: `login`, `logout-all`, `read-me`. Renaming a
route renames a client's function, so an id changes only on purpose, and
`openapi.json` shows it in review.
"""

import re
from typing import Any

MAX_LENGTH = 40
OPERATION_ID = re.compile(r"[a-z][a-z0-9-]*")

# fastapi-users' route names whose last part does not read as an action.
FASTAPI_USERS_NAMES = {
    "verify:request-token": "request-verify-token",
    "users:current_user": "read-me",
    "users:patch_current_user": "update-me",
    "users:user": "read-user",
    "users:patch_user": "update-user",
}

# Each id given out in this process, and the route it names ("GET /api/users/me").
_routes_by_id: dict[str, str] = {}


def operation_id(route: Any) -> str:
    """The operation id of `route`, which generated clients name its function after.

    The route's name, `_` turned into `-`: `logout_all` -> `logout-all`.

    fastapi-users names its routes `router:[provider.]backend.action`
    (`auth:jwt.login`, `oauth:google.jwt.callback`): the router and the backend
    (one per app) are dropped, so the ids are `login` and `google-callback`,
    whichever auth strategy a project chose.

    The app's `generate_unique_id_function`: FastAPI calls it for every route
    of the app as it first resolves them (first request, or schema). Two routes
    that would share an id, or an id that is not short lowercase words, stop it
    there: set the route's `name=`.
    """
    name: str = route.name
    if name in FASTAPI_USERS_NAMES:
        name = FASTAPI_USERS_NAMES[name]
    elif ":" in name:
        parts = name.partition(":")[2].split(".")
        name = "-".join(parts[:-2] + parts[-1:])
    operation = name.replace("_", "-")
    described = f"{' '.join(sorted(route.methods))} {route.path}"
    if not OPERATION_ID.fullmatch(operation) or len(operation) > MAX_LENGTH:
        message = (
            f"the name {route.name!r} of {described} makes the operation id {operation!r}: "
            f"ids are lowercase words joined by '-', at most {MAX_LENGTH} characters"
        )
        raise ValueError(message)
    owner = _routes_by_id.setdefault(operation, described)
    if owner != described:
        message = (
            f"{described} and {owner} would share the operation id {operation!r}: "
            "give one of them another name="
        )
        raise ValueError(message)
    return operation
