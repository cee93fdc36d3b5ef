from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from core.errors import FileOpError
from daemon.files.fileops import FileOps, unique_destination
from daemon.store.db import open_store
from daemon.store.schema import journal


@pytest.fixture()
def ops(tmp_path: Path) -> FileOps:
    return FileOps(open_store(f"sqlite:///{tmp_path / 'db.sqlite'}"), tmp_path)


def states(ops: FileOps) -> list[str]:
    with ops.store.read() as conn:
        return [r.state for r in conn.execute(select(journal).order_by(journal.c.id))]


def test_move_is_journaled_and_keeps_bytes_and_mtime(ops: FileOps, tmp_path: Path) -> None:
    src = tmp_path / "inbox" / "a.png"
    src.parent.mkdir()
    src.write_bytes(b"pixels")
    os.utime(src, (1_000_000, 1_000_000))
    dst = tmp_path / "raw" / "set_x" / "a.png"
    ops.move(src, dst, sha256=hashlib.sha256(b"pixels").hexdigest())
    assert not src.exists() and dst.read_bytes() == b"pixels" and dst.stat().st_mtime == 1_000_000
    assert states(ops) == ["done"]


def test_never_overwrites(ops: FileOps, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"new")
    (tmp_path / "b.png").write_bytes(b"old")
    with pytest.raises(FileOpError, match="refusing to overwrite"):
        ops.move(tmp_path / "a.png", tmp_path / "b.png")
    assert (tmp_path / "b.png").read_bytes() == b"old" and (tmp_path / "a.png").read_bytes() == b"new"
    assert states(ops) == ["failed"]
    assert unique_destination(tmp_path / "b.png").name == "b (2).png"


def _plan(ops: FileOps, src: str, dst: str) -> None:
    with ops.store.write() as conn:
        conn.execute(insert(journal).values(op="move", src=src, dst=dst, state="planned", created_at=time.time()))


def test_recover_crash_between_link_and_unlink(ops: FileOps, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    os.link(tmp_path / "a.png", tmp_path / "b.png")  # the crash left two names for one file
    _plan(ops, "a.png", "b.png")
    lines = ops.recover()
    assert "removed the second link" in lines[0]
    assert not (tmp_path / "a.png").exists() and (tmp_path / "b.png").read_bytes() == b"x"
    assert states(ops) == ["done"]


def test_recover_crash_before_move(ops: FileOps, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    _plan(ops, "a.png", "b.png")
    ops.recover()
    assert (tmp_path / "a.png").exists() and states(ops) == ["failed"]


def test_undo_batch_restores_every_file(ops: FileOps, tmp_path: Path) -> None:
    for n in ("a", "b"):
        (tmp_path / f"{n}.png").write_bytes(n.encode())
    ops.move(tmp_path / "a.png", tmp_path / "out" / "a.png", batch_id="B1")
    ops.move(tmp_path / "b.png", tmp_path / "out" / "b.png", batch_id="B1")
    ops.undo_batch("B1")
    assert (tmp_path / "a.png").read_bytes() == b"a" and (tmp_path / "b.png").read_bytes() == b"b"
    assert not any((tmp_path / "out").iterdir())
    with pytest.raises(FileOpError, match="no completed moves"):
        ops.undo_batch("B1")
