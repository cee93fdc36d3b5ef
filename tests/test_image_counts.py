"""image_counts (migration 0007) is kept by the database: every way an image row changes moves the
counts as a recount would, so a round reads one row instead of counting the library."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daemon.store.db import open_store


def _recount(db: sqlite3.Connection) -> tuple[int, int]:
    present = db.execute("SELECT count(*) FROM images WHERE state = 'present'").fetchone()[0]
    hashed = db.execute("SELECT count(*) FROM images WHERE state = 'present' AND phash IS NOT NULL").fetchone()[0]
    return present, hashed


def test_counts_follow_inserts_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    open_store(f"sqlite:///{path}").close()
    db = sqlite3.connect(path)

    def counts() -> tuple[int, int, int]:
        row = db.execute("SELECT present, hashed, departed FROM image_counts WHERE id = 0").fetchone()
        assert row[:2] == _recount(db)
        return row

    def add(i: int, state: str, phash: str | None) -> None:
        db.execute(
            "INSERT INTO images VALUES (?, ?, ?, 1, 8, 8, 'PNG', 0, ?, 0, 0, ?)",
            (f"{i:064x}", f"raw/{i}.png", f"{i}.png", phash, state),
        )

    assert counts() == (0, 0, 0)
    add(1, "present", "0f0f0f0f0f0f0f0f")
    add(2, "present", None)  # its pHash not computed yet
    add(3, "missing", "0f0f0f0f0f0f0f0f")
    assert counts() == (2, 1, 0)
    db.execute("UPDATE images SET phash = 'f0f0f0f0f0f0f0f0' WHERE sha256 = ?", (f"{2:064x}",))
    assert counts() == (2, 2, 0)
    db.execute("UPDATE images SET phash = '00000000000000ff' WHERE sha256 = ?", (f"{2:064x}",))  # recomputed
    db.execute("UPDATE images SET path = 'raw/moved.png' WHERE sha256 = ?", (f"{1:064x}",))
    assert counts() == (2, 2, 0)
    db.execute("UPDATE images SET state = 'exported' WHERE sha256 = ?", (f"{1:064x}",))
    assert counts() == (1, 1, 1)  # a compared image left
    db.execute("UPDATE images SET state = 'present' WHERE sha256 = ?", (f"{3:064x}",))  # one came back
    assert counts() == (2, 2, 1)
    db.execute("UPDATE images SET phash = NULL WHERE sha256 = ?", (f"{3:064x}",))
    assert counts() == (2, 1, 2)
    db.execute("DELETE FROM images WHERE sha256 = ?", (f"{2:064x}",))
    db.execute("DELETE FROM images WHERE sha256 = ?", (f"{1:064x}",))  # not present: nothing moves
    assert counts() == (1, 0, 3)
    db.commit()
    db.close()
