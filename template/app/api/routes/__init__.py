"""The API's routers: every module of this package that has a `router`, mounted by
app/main.py under /api, in the order of the modules' names, those that set
`MOUNTED_LAST = True` after the rest.

Found, not listed: adding a router is adding its module, and no shared file
changes, so a project's routers and those a template update brings never touch
the same lines. Requests are matched against the routes in that order; no two
modules serve the same path. A request is matched through every router mounted
before its own, so routers that are costly to pass and rarely asked for (auth's
nested fastapi-users routers) go last: every other request then skips them.
"""

import importlib
import pkgutil

from fastapi import APIRouter


def find_routers() -> tuple[APIRouter, ...]:
    modules = [
        importlib.import_module(f"{__name__}.{module.name}")
        for module in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name)
    ]
    routed = [
        module for module in modules if isinstance(getattr(module, "router", None), APIRouter)
    ]
    # sorted() is stable: within each group, the modules' names decide.
    routed.sort(key=lambda module: getattr(module, "MOUNTED_LAST", False))
    return tuple(module.router for module in routed)


ROUTERS = find_routers()
