"""Frozen migrations: a fresh database and one upgraded from every earlier release match schema.py.

tests/fixtures/db_after_<NNNN>.sqlite were made by the code released with migration NNNN
(tests/fixtures/make_store_fixture.py run in a checkout of that commit), one seeded row per table.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.dialects import sqlite

from daemon.store import schema
from daemon.store.db import MIGRATIONS, open_store

FIXTURES = Path(__file__).parent / "fixtures"
ALL = [name for name, _ in MIGRATIONS]
A = "a" * 64


def structure(path: Path) -> dict[str, object]:
    """Columns (name, type, not null, pk) and named indexes of every table, as SQLite reports them."""
    con = sqlite3.connect(path)
    try:
        out: dict[str, object] = {}
        for (table,) in con.execute("select name from sqlite_master where type='table' order by name"):
            cols = [(r[1], r[2], bool(r[3]), r[5]) for r in con.execute(f'PRAGMA table_info("{table}")')]
            idx = sorted(
                (r[1], tuple(c[2] for c in con.execute(f'PRAGMA index_info("{r[1]}")')), bool(r[2]))
                for r in con.execute(f'PRAGMA index_list("{table}")')
                if not r[1].startswith("sqlite_autoindex")
            )
            out[table] = (cols, idx)
        return out
    finally:
        con.close()


def declared() -> dict[str, object]:
    """The same, from schema.py."""
    dialect = sqlite.dialect()
    out: dict[str, object] = {}
    for t in schema.metadata.sorted_tables:
        pk = [c.name for c in t.primary_key.columns]
        cols = [
            (c.name, c.type.compile(dialect=dialect), not c.nullable, pk.index(c.name) + 1 if c.name in pk else 0)
            for c in t.columns
        ]
        idx = sorted((i.name, tuple(c.name for c in i.columns), bool(i.unique)) for i in t.indexes)
        out[t.name] = (cols, idx)
    return dict(sorted(out.items()))


def test_fresh_database_matches_schema_py(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    open_store(f"sqlite:///{db}").close()
    assert structure(db) == declared()


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("db_after_*.sqlite")), ids=lambda p: p.stem)
def test_upgrade_from_every_release(fixture: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    shutil.copy(fixture, db)
    released = fixture.stem.removeprefix("db_after_")
    before = {r[0] for r in sqlite3.connect(db).execute("select name from schema_migrations")}
    assert max(before).startswith(released)
    store = open_store(f"sqlite:///{db}")
    try:
        assert store.applied_migrations() == ALL
        assert store.migrate() == []
        with store.read() as conn:  # what the release wrote is still there
            assert conn.execute(select(schema.images.c.sha256)).scalars().all() == [A, "b" * 64]
            assert conn.execute(select(schema.sets.c.folder, schema.sets.c.source_folder)).all() == [
                ("raw/set_s1", None)
            ]
            assert conn.execute(select(schema.decisions.c.winner)).scalar_one() == A
            # counted from the rows that were there (0007), whatever release made them
            assert conn.execute(select(schema.image_counts)).one() == (0, 2, 2, 0)
        with store.write() as conn:  # and today's code writes to it
            conn.execute(
                insert(schema.sets).values(
                    id="s2",
                    created_at=1.0,
                    source="folder",
                    reason="dropped folder",
                    size=1,
                    folder="raw/set_s2",
                    status="filing",
                    source_folder="inbox/x",
                )
            )
            conn.execute(
                insert(schema.proposals).values(
                    set_id="s2",
                    ts=1.0,
                    model_version="prior",
                    source="prior",
                    winner=A,
                    confidence=0.5,
                    margin=0.1,
                    uncertain=True,
                    mode="watch",
                    body="{}",
                )
            )
    finally:
        store.close()
    assert structure(db) == declared()
