"""Dependencies shared by the routers, as `Annotated` aliases."""

from typing import Annotated

from fastapi import Depends

from app.core.users import current_active_user, current_superuser
from app.db.models.user import User
from app.db.session import SessionDep

CurrentUser = Annotated[User, Depends(current_active_user)]
CurrentSuperuser = Annotated[User, Depends(current_superuser)]

__all__ = ["CurrentSuperuser", "CurrentUser", "SessionDep"]
