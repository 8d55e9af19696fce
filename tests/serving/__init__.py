"""Serving and operating: real uvicorn under faults, load and shutdown; PgBouncer; the image."""
