"""Benchmarks of the template and of the service it renders: `uv run python -m bench`.

Prints one Markdown table (min / median / max over runs), the one in bench/README.md's
"The latest table", and writes every measurement as JSON for comparing runs.
"""
