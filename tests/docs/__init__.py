"""Docs and benchmark: README, AGENTS.md, CHANGELOG stay true; bench/ and the repository's code."""
