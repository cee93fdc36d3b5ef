"""labels/sessions/<date>__session.jsonl: append-only, one flushed and fsynced line at a time.

A line counts (the decision is marked logged) only once every byte of it is written and fsynced.

A decision is committed to the database (logged = false) before its line is appended, and
marked logged after. After a crash, `flush_unlogged` appends only the lines the file does not
already end with, so a kill -9 anywhere in between yields exactly one line.
"""

from __future__ import annotations

import errno
import os
from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update

from core.atomicfile import fsync_dir
from core.labels.session import parse_line, session_file_name
from daemon.context import Ctx
from daemon.store.schema import decisions


def session_path(ctx: Ctx, ts: datetime) -> Path:
    return ctx.cfg.path("labels") / "sessions" / session_file_name(ts)


def append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        data = (line + "\n").encode("utf-8")
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # A power loss tore the previous line: end it, so this line is not glued onto it.
            data = b"\n" + data
        view = memoryview(data)
        while view:
            # A full disk first writes what fits and returns a short count; the next write then
            # raises ENOSPC. Either way the line is not logged until all of it is on disk: the
            # decision stays unlogged and is appended again, and the torn tail left here is
            # ended by that next append (above).
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.EIO, "write wrote nothing", str(path))
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:  # the new file's directory entry must be durable too
        fsync_dir(path.parent)


def _contains(path: Path, line: str) -> bool:
    if not path.exists():
        return False
    with path.open("r", encoding="utf-8") as f:
        return any(existing.rstrip("\n") == line for existing in f)


def write_logged(ctx: Ctx, decision_id: int, line: str, *, check_existing: bool = False) -> None:
    ts = parse_line(line, 1).ts
    path = session_path(ctx, ts)
    if not (check_existing and _contains(path, line)):
        append_line(path, line)
    with ctx.store.write() as conn:
        conn.execute(update(decisions).where(decisions.c.id == decision_id).values(logged=True))


def flush_unlogged(ctx: Ctx) -> int:
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(decisions.c.id, decisions.c.line).where(decisions.c.logged.is_(False)).order_by(decisions.c.id)
        ).all()
    for r in rows:
        write_logged(ctx, r.id, r.line, check_existing=True)
    return len(rows)
