"""`scan` and `run` are one pipeline (daemon/pipeline.py): the same files give the same sets,
near-duplicate marks, proposals, parquet export and status, whether the daemon took them in
as events over time or `scan` took them at once.

Before the pipeline was assembled in one place, `run` and `scan` sequenced the steps each in
its own loop, and differently: `scan` filed the loose sets before the near-duplicate refresh and
the export, while `run` refreshed both when the extraction queue drained, before a loose set's
quiet time was over; the set was then filed with no near-duplicate mark and the export kept
its members' inbox paths."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from core.config import load_config
from daemon.app import build_ctx
from daemon.files.recovery import STARTUP_STEPS
from daemon.pipeline import ROUND, Pipeline
from tests.helpers import DaemonProc, bestshot, db_rows, filed_sets, status, textured, wait_for, write_config, write_png


def outputs(root: Path) -> dict[str, Any]:
    names = dict(db_rows(root, "SELECT sha256, original_name FROM images"))
    hashes = root / "sidecar" / "hashes.parquet"
    return {
        "sets": filed_sets(root),
        "near-duplicate marks": sorted(
            (set_id, names[sha], names.get(mark))
            for set_id, sha, mark in db_rows(root, "SELECT set_id, sha256, near_duplicate_of FROM set_members")
        ),
        "proposed winners": sorted(
            (set_id, names[winner]) for set_id, winner in db_rows(root, "SELECT set_id, winner FROM proposals")
        ),
        "hashes.parquet": sorted((r["path"], r["phash"]) for r in pq.read_table(hashes).to_pylist())
        if hashes.is_file()
        else None,
    }


def summary(root: Path) -> dict[str, Any]:
    s = status(root)
    return {k: s[k] for k in ("images_by_state", "sets_by_status", "pending_jobs", "open_errors", "mode")}


def test_scan_and_run_give_the_same_outputs(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    base = textured(50, w=160, h=240)
    for i in range(2):  # near-identical loose files: their pHash puts them in one set, one marks the other
        write_png(drop / f"near_{i}.png", textured(60 + i, base=base, noise=2.0))
    for i in range(2):
        write_png(drop / "folder" / f"f_{i}.png", textured(70 + i, w=160, h=240))
    # A quiet time the extraction queue drains well within: the loose set closes after it.
    extra = {"grouping": {"quiet_seconds": 4.0}}
    scanned, watched = tmp_path / "scanned", tmp_path / "watched"
    for root in (scanned, watched):
        write_config(root, extra)
        shutil.copytree(drop, root / "inbox")

    bestshot("scan", root=scanned)
    want = outputs(scanned)
    assert sorted(map(len, want["sets"].values())) == [2, 2]
    assert ["near_0.png", "near_1.png"] in want["sets"].values()
    assert sum(mark is not None for *_x, mark in want["near-duplicate marks"]) == 1
    assert want["hashes.parquet"] is not None and all(p.startswith("raw/set_") for p, _h in want["hashes.parquet"])

    with DaemonProc(watched, "-v"):
        with contextlib.suppress(AssertionError):  # the comparison below says what differs
            wait_for(lambda: outputs(watched) == want, timeout=60, what="the daemon's outputs to be scan's")
        assert outputs(watched) == want
    assert summary(watched) == summary(scanned)


def test_a_round_runs_its_steps_in_the_listed_order(tmp_path: Path) -> None:
    ctx = build_ctx(load_config(root=tmp_path / "root", env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    ran: list[str] = []

    def guard(what: str, step: Callable[[], object]) -> object:
        ran.append(what)
        return step()

    pipeline = Pipeline(ctx)
    pipeline.recover(guard)
    assert ran == [what for what, _step in STARTUP_STEPS]
    ran.clear()
    pipeline.round(guard, close_open=True)  # the first round with nothing queued: every step
    assert ran == list(ROUND)
    ran.clear()
    pipeline.round(guard)  # nothing drained, nothing filed, no set to close
    assert ran == ["model unload", "filing", "decisions", "extraction", "ranking"]
    ctx.store.close()
