"""The API's routers: every module of this package that has a `router`, mounted by
app/main.py under /api, in the order of the modules' names.

Found, not listed: adding a router is adding its module, and no shared file
changes, so a project's routers and those a template update brings never touch
the same lines. Requests are matched against the routes in that order; no two
modules serve the same path.
"""

import importlib
import pkgutil

from fastapi import APIRouter


def find_routers() -> tuple[APIRouter, ...]:
    routers = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
        router = getattr(importlib.import_module(f"{__name__}.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            routers.append(router)
    return tuple(routers)


ROUTERS = find_routers()
