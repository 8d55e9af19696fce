"""Persistence: models, the engine and sessions."""
