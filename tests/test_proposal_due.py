"""The sets a ranking round looks at (proposal_due, kept by the database's triggers) give the same
sets to propose as the full query over every filed set, through arrivals, pending work, re-analysed
crops, mode changes, decisions and retractions; and what reaches the user (proposal.json) follows."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from core.config import load_config
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.extractors import jobs
from daemon.rank.ranking import due_sets, make_proposals, members_of, ready_sets, refresh_review_links, review_queue
from daemon.store import records
from daemon.store.db import open_store
from daemon.store.schema import proposal_due, sets, sidecars
from tests.helpers import ingest, textured, write_png

FIXTURES = Path(__file__).parent / "fixtures"


def _ingest(ctx: Ctx, folder: Path, seeds: range) -> str:
    for s in seeds:
        write_png(folder / f"img_{s:02}.png", textured(700 + s, w=64, h=96))
    ingest(ctx)
    with ctx.store.read() as conn:
        return str(conn.execute(select(sets.c.id).order_by(sets.c.created_at.desc()).limit(1)).scalar_one())


def _oracle(root: Path, published: bool) -> list[str]:
    """The rule, from the raw rows (prior proposals only: no model is trained here)."""
    db = sqlite3.connect(root / "bestshot.sqlite")
    try:
        out = []
        for sid, _created in db.execute("SELECT id, created_at FROM sets WHERE status = 'filed' ORDER BY created_at"):
            members = [m for (m,) in db.execute("SELECT sha256 FROM set_members WHERE set_id = ?", (sid,))]
            busy = any(
                db.execute("SELECT 1 FROM jobs WHERE sha256 = ? AND state IN ('pending', 'running')", (m,)).fetchone()
                for m in members
            )
            props = db.execute("SELECT ts, source, mode FROM proposals WHERE set_id = ?", (sid,)).fetchall()
            proposed = any(src == "prior" and (mode != "watch" or not published) for _ts, src, mode in props)
            last = max((ts for ts, _s, _m in props), default=None)
            newer = last is not None and any(
                db.execute(
                    "SELECT 1 FROM sidecars WHERE sha256 = ? AND extractor IN ('anomalies', 'crop') AND created_at > ?",
                    (m, last),
                ).fetchone()
                for m in members
            )
            if not busy and (not proposed or newer):
                out.append(sid)
        return out
    finally:
        db.close()


def _same(ctx: Ctx, published: bool) -> list[str]:
    """The full query, the rule read from the raw rows and the marked sets agree; returns them
    (the marks looked at are cleared)."""
    with ctx.store.read() as conn:
        full = ready_sets(conn, "", published)
    assert full == _oracle(ctx.root, published)
    with ctx.store.write() as conn:
        due = due_sets(conn, "", published)
    assert due == full
    return full


def _rewrite_crop(ctx: Ctx, sha: str, verdict: str) -> None:
    """A re-analysis stores the image's crop anew (as a recalibration or a version bump does)."""
    with ctx.store.write() as conn:
        records.upsert(
            conn,
            sidecars,
            {
                "sha256": sha,
                "extractor": "crop",
                "version": 1,
                "payload": json.dumps({"verdict": verdict, "best": None}),
                "blob": None,
                "files": "[]",
                "created_at": time.time(),
            },
            ["sha256", "extractor", "version"],
        )


def test_marked_sets_match_the_full_query(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    a = _ingest(ctx, root / "inbox" / "a", range(0, 3))
    b = _ingest(ctx, root / "inbox" / "b", range(3, 6))
    assert _same(ctx, False) == [a, b]
    assert len(make_proposals(ctx, "watch")) == 2
    assert _same(ctx, False) == []

    c = _ingest(ctx, root / "inbox" / "c", range(6, 9))  # a new set arrives
    with ctx.store.write() as conn:  # ... with work still pending on one member
        sha_c = members_of(conn, c)[0][0]
        jobs.enqueue(conn, sha_c, [jobs.JobSpec("quality", 99)])
    assert _same(ctx, False) == []
    with ctx.store.write() as conn:
        jobs.mark(conn, sha_c, jobs.JobSpec("quality", 99), "done")
    assert _same(ctx, False) == [c]
    assert [r.set_id for r in make_proposals(ctx, "watch")] == [f"set_{c}"]

    with ctx.store.read() as conn:
        sha_a = members_of(conn, a)[1][0]
    _rewrite_crop(ctx, sha_a, "review")  # re-analysed after its proposal
    assert _same(ctx, False) == [a]
    make_proposals(ctx, "watch")

    # Re-analysed while busy; another set is proposed meanwhile; the work ends: proposed again.
    d = _ingest(ctx, root / "inbox" / "d", range(20, 22))
    _rewrite_crop(ctx, sha_a, "crop")
    with ctx.store.write() as conn:
        jobs.enqueue(conn, sha_a, [jobs.JobSpec("quality", 98)])
    assert _same(ctx, False) == [d]
    make_proposals(ctx, "watch")
    with ctx.store.write() as conn:
        jobs.mark(conn, sha_a, jobs.JobSpec("quality", 98), "done")
    assert _same(ctx, False) == [a]
    make_proposals(ctx, "watch")

    assert _same(ctx, True) == [a, b, c, d]  # recommend mode: shadow proposals do not count
    assert len(make_proposals(ctx, "recommend")) == 4
    with ctx.store.write() as conn:  # decided, then retracted
        conn.execute(update(sets).where(sets.c.id == b).values(status="decided"))
    _rewrite_crop(ctx, members_of_one(ctx, b), "crop")
    assert _same(ctx, True) == []
    with ctx.store.write() as conn:
        conn.execute(update(sets).where(sets.c.id == b).values(status="filed"))
    assert _same(ctx, True) == [b]  # its crop changed after its last proposal
    assert [r.set_id for r in make_proposals(ctx, "recommend")] == [f"set_{b}"]
    assert _same(ctx, True) == []
    with ctx.store.read() as conn:
        assert conn.execute(select(proposal_due)).all() == []  # every mark looked at is cleared


def members_of_one(ctx: Ctx, set_id: str) -> str:
    with ctx.store.read() as conn:
        return members_of(conn, set_id)[0][0]


def test_proposal_json_follows_the_marks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    a = _ingest(ctx, root / "inbox" / "a", range(10, 13))
    made = make_proposals(ctx, "recommend")
    assert [r.set_id for r in made] == [f"set_{a}"]
    with ctx.store.read() as conn:
        folder = ctx.abs(conn.execute(select(sets.c.folder).where(sets.c.id == a)).scalar_one())
    first = json.loads((folder / "proposal.json").read_text())
    assert first["crop"] is None

    assert make_proposals(ctx, "recommend") == []  # nothing changed: the next rounds write nothing
    assert json.loads((folder / "proposal.json").read_text()) == first

    _rewrite_crop(ctx, first["winner_id"], "crop")
    _rewrite_crop(ctx, first["winner_id"], "review")  # twice before a round: the set is marked already
    again = make_proposals(ctx, "recommend")
    assert [r.set_id for r in again] == [f"set_{a}"]
    body = json.loads((folder / "proposal.json").read_text())
    assert body["crop"] == {"verdict": "review", "best": None}
    # The same library ranks the same way: only the crop and the time changed.
    assert {k: v for k, v in body.items() if k not in ("crop", "created")} == {
        k: v for k, v in first.items() if k not in ("crop", "created")
    }


def test_sets_filed_before_the_upgrade_are_looked_at(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    shutil.copy(FIXTURES / "db_after_0005.sqlite", db)
    store = open_store(f"sqlite:///{db}")
    try:
        with store.read() as conn:  # the fixture's filed set has a shadow (watch) proposal
            assert conn.execute(select(proposal_due)).all() == []
            want = ready_sets(conn, "", True)
        assert want == ["s1"]
        with store.write() as conn:
            assert due_sets(conn, "", True) == want
            assert due_sets(conn, "", True) == want  # still ready: nothing proposed it
    finally:
        store.close()
    names = {r[0] for r in sqlite3.connect(db).execute("select name from sqlite_master where type='trigger'")}
    assert {"proposal_due_set_filed", "proposal_due_sidecar_added", "proposal_due_job_ended"} <= names


def test_many_marked_sets_at_once(tmp_path: Path) -> None:
    """A change of model or mode marks every filed set: thousands are looked at in chunks (SQLite
    binds at most 32,766 variables per statement, 250,000 in some builds), in filing order."""
    store = open_store(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        with store.write() as conn:
            conn.execute(
                sets.insert(),
                [
                    {
                        "id": f"s{i:05}",
                        "created_at": float((i * 7919) % 52000),
                        "source": "folder",
                        "reason": "dropped folder",
                        "size": 0,
                        "folder": f"raw/set_s{i:05}",
                        "status": "filed",
                    }
                    for i in range(52000)
                ],
            )
        with store.read() as conn:
            full = ready_sets(conn, "", False)
        assert len(full) == 52000
        with store.write() as conn:
            assert due_sets(conn, "", False) == full
    finally:
        store.close()


def test_a_change_of_mode_is_proposed_over_bounded_rounds_as_in_one(tmp_path: Path) -> None:
    """Every filed set due at once (a change of mode here, of model alike): rounds of at most
    `limit` sets, oldest first, propose every one of them, with the proposals one unbounded round
    makes on the same library."""
    root = tmp_path / "root"
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    ids = [_ingest(ctx, root / "inbox" / f"s{k}", range(30 + 2 * k, 32 + 2 * k)) for k in range(5)]
    assert len(make_proposals(ctx, "watch")) == 5
    twin = tmp_path / "twin"
    shutil.copytree(root, twin, symlinks=True)

    rounds = []
    while made := make_proposals(ctx, "recommend", limit=2):
        rounds.append([r.set_id for r in made])
    assert rounds == [[f"set_{i}" for i in ids[:2]], [f"set_{i}" for i in ids[2:4]], [f"set_{ids[4]}"]]
    with ctx.store.read() as conn:
        assert conn.execute(select(proposal_due)).all() == []

    other = build_ctx(
        load_config(root=twin, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    assert len(make_proposals(other, "recommend")) == 5

    def published(r: Path) -> dict[str, dict[str, object]]:
        return {
            p.parent.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "created"}
            for p in (r / "raw").glob("set_*/proposal.json")
        }

    assert len(published(root)) == 5
    assert published(root) == published(twin)


def test_scan_proposes_every_set_when_a_round_proposes_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline runs the next round at once while sets are still due: `scan` (run to
    completion) leaves none unproposed, however few a round may propose."""
    from daemon.pipeline import Pipeline
    from daemon.rank import ranking

    monkeypatch.setattr(ranking, "PROPOSALS_PER_ROUND", 1)
    root = tmp_path / "root"
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    for k in range(3):
        for s in range(2):
            write_png(root / "inbox" / f"s{k}" / f"img_{s}.png", textured(800 + 2 * k + s, w=64, h=96))
    Pipeline(ctx, without=("parquet export",)).run_to_completion(recover=False)
    db = sqlite3.connect(root / "bestshot.sqlite")
    try:
        filed = {r[0] for r in db.execute("SELECT id FROM sets WHERE status = 'filed'")}
        proposed = {r[0] for r in db.execute("SELECT DISTINCT set_id FROM proposals")}
    finally:
        db.close()
    assert len(filed) == 3 and proposed == filed


def test_review_links_are_the_review_queue_order_read_from_the_columns(tmp_path: Path) -> None:
    """exports/review_queue/next/ links the uncertain sets in review_queue's order (which parses
    every open proposal) while reading only the proposals' columns; a link already right is left
    alone, a stale one goes, the user's own file stays."""
    root = tmp_path / "root"
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    for k in range(4):
        _ingest(ctx, root / "inbox" / f"r{k}", range(40 + 3 * k, 43 + 3 * k))
    assert len(make_proposals(ctx, "recommend")) == 4
    uncertain = [it for it in review_queue(ctx) if it["uncertain"]]
    assert len(uncertain) >= 2  # the prior states about chance: its proposals are routed to the user
    want = {f"{i:03}__{ctx.abs(it['folder']).name}": ctx.abs(it["folder"]) for i, it in enumerate(uncertain, 1)}
    nxt = ctx.cfg.path("review_queue") / "next"
    nxt.mkdir(parents=True)
    (nxt / "notes.txt").write_text("mine")
    (nxt / "999__gone").symlink_to("nowhere")

    refresh_review_links(ctx)
    links = {p.name: p.resolve() for p in nxt.iterdir() if p.is_symlink()}
    assert links == {name: folder.resolve() for name, folder in want.items()}
    assert (nxt / "notes.txt").read_text() == "mine"
    before = {p.name: p.lstat().st_ino for p in nxt.iterdir()}
    refresh_review_links(ctx)
    assert {p.name: p.lstat().st_ino for p in nxt.iterdir()} == before


def test_a_round_that_leaves_sets_due_asks_for_the_next_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's worker waits until a round's next_deadline: while sets are still due it is
    now, so the rounds follow one another (between events) until every set is proposed."""
    from daemon.pipeline import Pipeline
    from daemon.rank import ranking

    monkeypatch.setattr(ranking, "PROPOSALS_PER_ROUND", 1)
    root = tmp_path / "root"
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    ids = [_ingest(ctx, root / "inbox" / f"q{k}", range(60 + 2 * k, 62 + 2 * k)) for k in range(3)]
    pipeline = Pipeline(ctx)  # every step: no other deadline is left in the past
    rounds = 0
    while True:
        r = pipeline.round()
        rounds += 1
        if not pipeline.rank.more:
            break
        assert r.next_deadline is not None and r.next_deadline <= time.time()
        assert rounds < 10
    assert rounds >= 3
    db = sqlite3.connect(root / "bestshot.sqlite")
    try:
        assert {r[0] for r in db.execute("SELECT DISTINCT set_id FROM proposals")} == set(ids)
    finally:
        db.close()
