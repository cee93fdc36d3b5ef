"""Small read/write helpers over the store shared by the stages."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.sql.schema import Table

from core.errors import BestshotError
from daemon.store.schema import errors, files, image_counts, images, state


def upsert(
    conn: Connection, table: Table, values: dict[str, Any], keys: list[str], *, insert_only: tuple[str, ...] = ()
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE for SQLite and PostgreSQL alike. `insert_only`: columns
    an existing row keeps (set when the row is made)."""
    upsert_many(conn, table, [values], keys, insert_only=insert_only)


def upsert_many(
    conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str], *, insert_only: tuple[str, ...] = ()
) -> None:
    """`upsert` of rows with the same columns, as one executemany."""
    if rows:
        stmt = _upsert_statement(conn.dialect.name, table, tuple(rows[0]), tuple(keys), insert_only)
        conn.execute(stmt, rows if len(rows) > 1 else rows[0])


@functools.cache
def _upsert_statement(
    dialect: str, table: Table, columns: tuple[str, ...], keys: tuple[str, ...], insert_only: tuple[str, ...] = ()
) -> Any:
    """Built once per shape, the values bound at execution: building and caching a statement
    with the values inside cost more than the insert itself (ingest runs several per image)."""
    # Imported here: the PostgreSQL dialect costs every `bestshot status` ~30 ms otherwise.
    stmt: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    rest = [c for c in columns if c not in keys and c not in insert_only]
    if not rest:
        return stmt.on_conflict_do_nothing()
    return stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in rest})


def record_error(
    conn: Connection, path: str | None, stage: str, err: BestshotError | str, sha256: str | None = None
) -> None:
    """Record a per-item failure once: an identical open error for the same path is not repeated."""
    kind = err.kind if isinstance(err, BestshotError) else "error"
    reason = err.reason if isinstance(err, BestshotError) else str(err)
    existing = conn.execute(
        select(errors.c.id).where(
            errors.c.path == path,
            errors.c.stage == stage,
            errors.c.reason == reason,
            errors.c.resolved.is_(False),
        )
    ).first()
    if existing:
        conn.execute(update(errors).where(errors.c.id == existing.id).values(ts=time.time()))
        return
    conn.execute(
        insert(errors).values(
            ts=time.time(), path=path, sha256=sha256, stage=stage, kind=kind, reason=reason, resolved=False
        )
    )


# Built once: ingest runs it for every image (building a statement costs more than running it).
_RESOLVE = (
    update(errors).where(errors.c.path == bindparam("p_path"), errors.c.resolved.is_(False)).values(resolved=True)
)


def resolve_errors(conn: Connection, path: str, stages: tuple[str, ...] | None = None) -> None:
    if not stages:
        conn.execute(_RESOLVE, {"p_path": path})
        return
    q = update(errors).where(errors.c.path == path, errors.c.resolved.is_(False), errors.c.stage.in_(stages))
    conn.execute(q.values(resolved=True))


def open_errors(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(errors).where(errors.c.resolved.is_(False)).order_by(errors.c.ts.desc()).limit(limit)
    ).all()
    return [{"ts": r.ts, "path": r.path, "stage": r.stage, "kind": r.kind, "reason": r.reason} for r in rows]


def count_open_errors(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(errors).where(errors.c.resolved.is_(False))).scalar_one())


def upsert_file(conn: Connection, rel: str, sha256: str, size: int, mtime_ns: int) -> None:
    upsert(
        conn,
        files,
        {"path": rel, "sha256": sha256, "size_bytes": size, "mtime_ns": mtime_ns, "seen_at": time.time()},
        ["path"],
    )


def forget_file(conn: Connection, rel: str) -> str | None:
    row = conn.execute(select(files.c.sha256).where(files.c.path == rel)).first()
    conn.execute(delete(files).where(files.c.path == rel))
    return row.sha256 if row else None


def paths_under(conn: Connection, folder_rel: str) -> list[str]:
    """Known file paths below a folder (a range on the primary key: "/" sorts just before "0")."""
    lo, hi = folder_rel + "/", folder_rel + "0"
    return [r.path for r in conn.execute(select(files.c.path).where(files.c.path > lo, files.c.path < hi))]


_KNOWN_FILE = select(files.c.sha256).where(
    files.c.path == bindparam("p_path"),
    files.c.size_bytes == bindparam("p_size"),
    files.c.mtime_ns == bindparam("p_mtime"),
)
_IMAGE_ROW = select(images).where(images.c.sha256 == bindparam("p_sha"))


def known_file(conn: Connection, rel: str, size: int, mtime_ns: int) -> str | None:
    """sha256 of a file already hashed at this path with the same size and mtime."""
    row = conn.execute(_KNOWN_FILE, {"p_path": rel, "p_size": size, "p_mtime": mtime_ns}).first()
    return row.sha256 if row else None


def image_row(conn: Connection, sha256: str) -> Any:
    return conn.execute(_IMAGE_ROW, {"p_sha": sha256}).first()


def set_image_path(conn: Connection, sha256: str, rel: str) -> None:
    conn.execute(
        update(images).where(images.c.sha256 == sha256).values(path=rel, last_seen=time.time(), state="present")
    )


def image_count(conn: Connection) -> Any:
    """The library's counts (present, hashed, departed: daemon.store.schema.image_counts), one row
    the database keeps, so nothing counts the library."""
    return conn.execute(select(image_counts).where(image_counts.c.id == 0)).one()


def get_state(conn: Connection, key: str, default: Any = None) -> Any:
    row = conn.execute(select(state.c.value).where(state.c.key == key)).first()
    return json.loads(row.value) if row else default


def put_state(conn: Connection, key: str, value: Any) -> None:
    upsert(conn, state, {"key": key, "value": json.dumps(value)}, ["key"])


@dataclass(frozen=True)
class Relocation:
    old_rel: str
    new_rel: str
    sha256: str
    size: int
    mtime_ns: int


_FORGET = delete(files).where(files.c.path == bindparam("p_old"))
_FOLLOW = (
    update(images)
    .where(images.c.sha256 == bindparam("p_sha"), images.c.path == bindparam("p_old"))
    .values(path=bindparam("p_new"), last_seen=bindparam("p_now"), state="present")
)


def relocate(conn: Connection, old_rel: str, new_rel: str, sha256: str, size: int, mtime_ns: int) -> None:
    """After the daemon itself moved a file: the path index and the image row follow at once,
    without waiting for the watcher's event (which may be coalesced or dropped)."""
    relocate_many(conn, [Relocation(old_rel, new_rel, sha256, size, mtime_ns)])


def relocate_many(conn: Connection, moves: list[Relocation]) -> None:
    """`relocate` of several files (a set's members, whose old and new paths are all distinct) in
    three statements: the old paths forgotten, the new ones indexed, and each image row that was
    at the old path moved to the new one."""
    if not moves:
        return
    now = time.time()
    conn.execute(_FORGET, [{"p_old": m.old_rel} for m in moves])
    upsert_many(
        conn,
        files,
        [
            {"path": m.new_rel, "sha256": m.sha256, "size_bytes": m.size, "mtime_ns": m.mtime_ns, "seen_at": now}
            for m in moves
        ],
        ["path"],
    )
    conn.execute(_FOLLOW, [{"p_sha": m.sha256, "p_old": m.old_rel, "p_new": m.new_rel, "p_now": now} for m in moves])
