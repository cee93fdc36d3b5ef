"""What the daemon's worker pays per round as the library grows: the cost should follow the work.

    .venv/bin/python benchmarks/proposals.py [--sizes 1000,4000,10000,40000] [--profile N]

Real sidecars first: four images (the shared AI portraits when ../shared/data is present,
generated PNGs otherwise) go through the real pipeline with every extractor except clip (its
weights do not ship) and get their prior proposal. Their rows (image, sidecars, jobs) are then
copied under new sha256s, each with a random pHash and a random unit vector standing in for the
CLIP embedding, four to a filed set that already has its shadow proposal, until the library holds
each size. That copy is the only shortcut: the figures time the daemon's own

Prints one row per size:
- idle round: a wake-up of the worker with nothing to do (no event, empty extraction queue);
- proposing one new set: four new images whose sidecars have just landed, filed as a set; the
  round in which the extraction queue drains (duplicates, parquet export) and the set is proposed;
- prior refit: the prior's standardisation fitted again from the sidecars of the library's images,
  at most `rank.prior_fit_images` of them (done when the library has changed by 10 % since the fit
  kept in the database, not per proposal);
- proposing one new set after an image left: the same round after one image, not in any
  near-duplicate group (ungrouped) or in one (grouped), was marked gone as the watcher marks an
  image moved out of the tree (its near-duplicates are refreshed in that round).
Then what rewriting the parquet files costs at each size (the daemon defers it, see
daemon/store/parquet_export.py).
`--profile N` prints the cProfile of both rounds at the largest size (top N functions).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_config
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.pipeline import Pipeline
from daemon.rank.ranking import fit_prior
from daemon.runner import Daemon
from daemon.store.parquet_export import SHARE, export_parquet
from tests.helpers import textured, write_png

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ai_portraits_hands" / "image"
EXTRACTORS = ["phash", "hands", "pose", "face", "saliency", "quality", "anomalies", "crop"]


def seed_root(root: Path) -> Ctx:
    inbox = root / "inbox" / "seed"
    inbox.mkdir(parents=True)
    if SHARED.is_dir():
        for p in sorted(SHARED.glob("*.png"))[:4]:
            shutil.copy(p, inbox / p.name)
    else:
        for i in range(4):
            write_png(inbox / f"gen_{i}.png", textured(i, w=512, h=768))
    ctx = build_ctx(load_config(None, root=root, env={}, overrides={"extractors": {"enabled": EXTRACTORS}}))
    Pipeline(ctx, without=("duplicates", "parquet export", "ranking")).run_to_completion(recover=False)
    return ctx


def worker_round(d: Daemon, was_pending: bool) -> None:
    """One round of the worker (Daemon._loop's Pipeline.round) after its wait returned with no
    event; `was_pending`: the previous round extracted the last images (the queue drains now)."""
    if was_pending:
        d.pipeline.queue_more()
    d.pipeline.round(d._guard)


class Library:
    """Grows the seeded database by copying the seed images' rows (sqlite3 directly, for speed)."""

    def __init__(self, db_file: Path) -> None:
        self.db = sqlite3.connect(db_file)
        self.rng = np.random.default_rng(0)
        self.seed = [r[0] for r in self.db.execute("SELECT sha256 FROM images WHERE state = 'present'")]
        (self.seed_set,) = self.db.execute("SELECT set_id FROM set_members LIMIT 1").fetchone()
        self.n = len(self.seed)
        self.mtime = self.db.execute("SELECT max(mtime) FROM images").fetchone()[0]

    def add_set(self, proposed: bool, grouped: bool = False) -> list[str]:
        """Four copies of the seed images as one filed set; `proposed`: with its shadow proposal;
        `grouped`: the four share one pHash and one embedding (a near-duplicate group)."""
        db, now = self.db, time.time()
        new = [secrets.token_hex(32) for _ in self.seed]
        phash, v = secrets.token_hex(8), self.rng.normal(size=512).astype("<f4")
        set_id = secrets.token_hex(5)
        for pos, (sha, old) in enumerate(zip(new, self.seed, strict=True)):
            # Each copy is the newest file so far, as arrivals are (near-duplicates are searched by mtime).
            self.mtime += 1
            db.execute(
                "INSERT INTO images SELECT ?, ?, original_name, size_bytes, width, height, format,"
                " ?, ?, first_seen, last_seen, state FROM images WHERE sha256 = ?",
                (sha, f"raw/set_{set_id}/{pos}.png", self.mtime, phash if grouped else secrets.token_hex(8), old),
            )
            db.execute(
                "INSERT INTO sidecars SELECT ?, extractor, version, payload, blob, files, ? FROM sidecars"
                " WHERE sha256 = ? AND extractor != 'clip'",
                (sha, now, old),
            )
            # CLIP weights do not ship: a random unit vector stands in, so duplicates and the parquet
            # export pay for embeddings as they do on the user's machine.
            if not grouped:
                v = self.rng.normal(size=512).astype("<f4")
            db.execute(
                "INSERT INTO sidecars VALUES (?, 'clip', 1, ?, ?, '[]', ?)",
                (
                    sha,
                    '{"model": "ViT-B-32", "pretrained": "random", "dim": 512}',
                    (v / np.linalg.norm(v)).tobytes(),
                    now,
                ),
            )
            db.execute(
                "INSERT INTO jobs (sha256, kind, version, state, attempts, error, created_at, updated_at)"
                " SELECT ?, kind, version, state, attempts, error, created_at, updated_at FROM jobs WHERE sha256 = ?",
                (sha, old),
            )
            db.execute("INSERT INTO set_members VALUES (?, ?, ?, NULL)", (set_id, sha, pos))
        db.execute(
            "INSERT INTO sets SELECT ?, ?, source, reason, size, ?, 'filed', NULL FROM sets WHERE id = ?",
            (set_id, now, f"raw/set_{set_id}", self.seed_set),
        )
        if proposed:
            db.execute(
                "INSERT INTO proposals (set_id, ts, model_version, source, winner, confidence, margin, uncertain,"
                " mode, body, batch_id) SELECT ?, ?, model_version, source, ?, confidence, margin, uncertain, mode,"
                " body, NULL FROM proposals WHERE set_id = ?",
                (set_id, now + 1, new[0], self.seed_set),
            )
        self.n += len(new)
        return new

    def depart(self, sha: str) -> None:
        """The image left the library, as the watcher records a file moved out of the tree."""
        self.db.execute("UPDATE images SET state = 'missing' WHERE sha256 = ?", (sha,))
        self.n -= 1

    def group_of(self, sha: str) -> str | None:
        row = self.db.execute("SELECT group_id FROM dup_groups WHERE sha256 = ?", (sha,)).fetchone()
        return None if row is None else str(row[0])

    def grow(self, target: int) -> None:
        while self.n < target:
            self.add_set(proposed=True)
        self.db.commit()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def profiled(fn: Callable[[], object], top: int) -> str:
    prof = cProfile.Profile()
    prof.runcall(fn)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,4000,10000,40000", help="library sizes (images), comma-separated")
    ap.add_argument("--profile", type=int, default=0, help="print the top N functions of both rounds")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        ctx = seed_root(root)
        d = Daemon(ctx)
        worker_round(d, was_pending=True)  # the seed set's proposal, the models loaded and unloaded
        lib = Library(root / "bestshot.sqlite")
        print(f"seed: {'shared AI portraits' if SHARED.is_dir() else 'generated PNGs'}, extractors {EXTRACTORS}")
        print(
            "| library | idle round (nothing to do) | proposing one new set | prior refit |"
            " proposing one new set after an image left: ungrouped | grouped |"
        )
        print("|---|---|---|---|---|---|")
        notes: list[str] = []
        for size in sizes:
            lib.grow(size)
            group = lib.add_set(proposed=True, grouped=True)  # one near-duplicate group of four
            lib.db.commit()
            worker_round(d, was_pending=True)  # what the growth changed (duplicates, parquet) is caught up ...
            while d.pipeline.rank.more:  # ... and its sets looked at, PROPOSALS_PER_ROUND a round, as the worker does
                worker_round(d, was_pending=False)
            idle = min(timed(lambda: worker_round(d, was_pending=False)) for _ in range(5))
            assert lib.group_of(group[0]) is not None, "the grouped set formed no group"
            propose: list[float] = []
            for _ in range(3):
                lonely = lib.add_set(proposed=False)
                lib.db.commit()
                propose.append(timed(lambda: _propose(d, lib)))
            refit = timed(lambda: _refit(ctx))
            # An image leaving (moved out of the tree): its row marked as the watcher marks it. Nothing
            # runs for that alone; the near-duplicates are refreshed when the next set has drained.
            left: dict[str, list[float]] = {"ungrouped": [], "grouped": []}
            for i in range(3):
                for kind, sha in (("ungrouped", lonely[i]), ("grouped", group[i])):
                    assert (lib.group_of(sha) is None) == (kind == "ungrouped")
                    lib.depart(sha)
                    lib.add_set(proposed=False)
                    lib.db.commit()
                    left[kind].append(timed(lambda: _propose(d, lib)))
            assert lib.group_of(group[3]) is None, "the group left with one member was not dissolved"
            print(
                f"| {lib.n:,} images | {idle:.0f} ms | {min(propose):.0f} ms | {refit / 1000:.1f} s"
                f" | {min(left['ungrouped']):.0f} ms | {min(left['grouped']):.0f} ms |",
                flush=True,
            )
            notes.append(f"{lib.n:,} images: parquet rewrite {timed(lambda: export_parquet(ctx)):.0f} ms")
        print(
            "parquet files (every image, so rewriting them grows with the library): the daemon rewrites them"
            f" after a drain at most once per {SHARE + 1:.0f}x their last rewrite time, not in every round above"
        )
        for line in notes:
            print("  " + line)
        if args.profile:
            print(profiled(lambda: worker_round(d, was_pending=False), args.profile))
            lib.add_set(proposed=False)
            lib.db.commit()
            print(profiled(lambda: worker_round(d, was_pending=True), args.profile))
        lib.db.close()


def _propose(d: Daemon, lib: Library) -> None:
    """The round in which the extraction queue drains and the newest set is proposed."""
    made = len(_proposals(lib))
    worker_round(d, was_pending=True)
    assert len(_proposals(lib)) == made + 1, "the new set was not proposed"


def _proposals(lib: Library) -> list[tuple[str]]:
    return lib.db.execute("SELECT id FROM proposals").fetchall()


def _refit(ctx: Ctx) -> None:
    with ctx.store.read() as conn:
        fit_prior(ctx, conn)


if __name__ == "__main__":
    main()
