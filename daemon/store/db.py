"""Engine set-up, named migrations, and the read/write transaction helpers.

SQLite runs in WAL mode so readers (e.g. `bestshot status`) never block the daemon; all
writes go through one process-wide lock with BEGIN IMMEDIATE, i.e. one writer at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, select
from sqlalchemy.engine import make_url

from daemon.store import schema
from daemon.store.migrations import MIGRATIONS, SCHEMA_MIGRATIONS_DDL

__all__ = ["MIGRATIONS", "Store", "open_store"]


class Store:
    def __init__(self, url: str, *, create_dirs: bool = True) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and create_dirs and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        self._lock = threading.RLock()
        if self.is_sqlite:
            self._configure_sqlite()

    def _configure_sqlite(self) -> None:
        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control away from the driver so BEGIN is ours (see sqlalchemy docs
            # on pysqlite transactions); otherwise writes could start as deferred and deadlock.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            opts = conn.get_execution_options()
            if not opts.get("write"):
                conn.exec_driver_sql("BEGIN")
                return
            # Set per transaction (pooled connections keep it): see `write`.
            conn.exec_driver_sql("PRAGMA synchronous=" + ("FULL" if opts.get("durable", True) else "NORMAL"))
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Connection]:
        """One explicit write transaction; commits on success, rolls back on any exception.

        A durable commit is on disk when this returns (the WAL is fsynced). `durable=False` skips
        that fsync, for what can be derived again from the files after a power cut (an image's
        registration, a journal entry's "done"): a crash of the process loses nothing either way,
        and the next durable commit puts it on disk too (the WAL is written in order), so a
        decision or a planned move committed later never stands without it."""
        opts = {"write": True, "durable": durable}
        with self._lock, self.engine.connect().execution_options(**opts) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def migrate(self) -> list[str]:
        """Apply pending named migrations, each in its own transaction; returns the names applied."""
        applied: list[str] = []
        with self.write() as conn:
            conn.exec_driver_sql(SCHEMA_MIGRATIONS_DDL)
        for name, fn in MIGRATIONS:
            with self.write() as conn:
                done = conn.execute(
                    select(schema.schema_migrations.c.name).where(schema.schema_migrations.c.name == name)
                ).first()
                if done:
                    continue
                fn(conn)
                conn.execute(insert(schema.schema_migrations).values(name=name, applied_at=time.time()))
                applied.append(name)
        return applied

    def applied_migrations(self) -> list[str]:
        with self.read() as conn:
            return [r[0] for r in conn.execute(select(schema.schema_migrations.c.name))]

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str) -> Store:
    store = Store(url)
    store.migrate()
    return store
