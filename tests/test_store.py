from __future__ import annotations

import sqlite3
from pathlib import Path

from daemon.store.db import MIGRATIONS, open_store


def test_migrations_are_named_recorded_and_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    s = open_store(url)
    assert s.applied_migrations() == [name for name, _ in MIGRATIONS]
    assert s.migrate() == []
    con = sqlite3.connect(tmp_path / "s.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert {"images", "sets", "set_members", "jobs", "errors", "journal", "decisions", "pairs", "sidecars"} <= tables


def test_write_rolls_back_on_error(tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        with s.write() as conn:
            conn.exec_driver_sql("insert into state(key, value) values ('a', '1')")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with s.read() as conn:
        assert conn.exec_driver_sql("select count(*) from state").scalar() == 0
