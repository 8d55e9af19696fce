"""The service: HTTP (`api`), configuration (`core`), persistence (`db`), bodies (`schemas`)."""
