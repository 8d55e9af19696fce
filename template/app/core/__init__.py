"""Configuration and cross-cutting services: settings, security, users, e-mail."""
