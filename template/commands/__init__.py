"""Administrative commands: `uv run python -m commands.<name>`."""
