"""SQLite (or any SQLAlchemy URL) store: schema, named migrations, one serialised writer."""

from daemon.store.db import Store

__all__ = ["Store"]
