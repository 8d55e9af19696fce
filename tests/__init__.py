"""The template repository's own tests; `ls tests/` is their table of contents."""
