"""Every model, so that `Base.metadata` knows every table: each module of
app/db/models/ is imported here.

Alembic's autogenerate and `alembic check` read the metadata from here, and
the app imports it so that relationships find the models they name. Found, not
listed: adding a model is adding its module, and no shared file changes, so a
project's models and those a template update brings never touch the same lines.
"""

import importlib
import pkgutil

from app.db import models
from app.db.models.base import Base

for module in pkgutil.iter_modules(models.__path__):
    importlib.import_module(f"{models.__name__}.{module.name}")

__all__ = ["Base"]
