"""Updating: `copier update` from one release to the next, and the hooks it runs."""
