"""SQLAlchemy models, one module per table; `app.db.base` imports them all."""
