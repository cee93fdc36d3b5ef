"""What a ranking round and a queue drain cost as the library grows.

    .venv/bin/python benchmarks/proposals.py [--images 10000]

Real sidecars first: a few images (the shared AI portraits when ../shared/data is present,
generated PNGs otherwise) go through the real pipeline with every extractor except clip (its
weights do not ship). Their image and sidecar rows are then copied under new sha256s, each with
a random pHash, until the library holds `--images` images. That copy is the only shortcut: the
figures below time the daemon's own functions on that database.

Prints, per library size:
- the prior model: first fit (reads every image's sidecars) and the next round (reused);
- the signals of one set of 4 (what each proposal reads);
- the steps run each time the extraction queue drains: near-duplicate groups (a full
  recomputation, and the incremental update after a new set of 4), parquet export (embeddings
  are random unit vectors standing in for CLIP's, which do not ship);
- re-analysing an image (anomaly report and crop, as after a version bump or a new calibration)
  with its stored detections, against rerunning the detectors it depends on.
"""

from __future__ import annotations

import argparse
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

from sqlalchemy import select

from core.config import load_config
from core.crop.from_sidecars import NEEDED
from core.extractors.registry import run_pass
from core.imaging import load
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.dedup import refresh_duplicates
from daemon.extractors.sidecar_store import stored_result
from daemon.pipeline import Pipeline
from daemon.rank.ranking import current_model, signals_for
from daemon.store.parquet_export import export_parquet
from daemon.store.schema import images
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


def grow(db_file: Path, target: int) -> list[str]:
    """Copy the seed images' rows until `target` images are present; returns the seed shas."""
    db = sqlite3.connect(db_file)
    rng = np.random.default_rng(target)
    seed = [r[0] for r in db.execute("SELECT sha256 FROM images WHERE state = 'present'")]
    have = db.execute("SELECT count(*) FROM images WHERE state = 'present'").fetchone()[0]
    while have < target:
        for sha in seed:
            if have >= target:
                break
            new = secrets.token_hex(32)
            # Each copy is the newest file so far, as arrivals are (near-duplicates are searched by mtime).
            db.execute(
                "INSERT INTO images SELECT ?, path || ?, original_name, size_bytes, width, height, format,"
                " (SELECT max(mtime) FROM images) + 1, ?, first_seen, last_seen, state FROM images"
                " WHERE sha256 = ?",
                (new, f".{have}", secrets.token_hex(8), sha),
            )
            db.execute(
                "INSERT INTO sidecars SELECT ?, extractor, version, payload, blob, files, created_at"
                " FROM sidecars WHERE sha256 = ? AND extractor != 'clip'",
                (new, sha),
            )
            # CLIP weights do not ship: a random unit vector stands in, so the near-duplicate
            # comparison pays for embeddings as it does on the user's machine.
            v = rng.normal(size=512).astype("<f4")
            db.execute(
                "INSERT INTO sidecars VALUES (?, 'clip', 1, ?, ?, '[]', ?)",
                (
                    new,
                    '{"model": "ViT-B-32", "pretrained": "random", "dim": 512}',
                    (v / np.linalg.norm(v)).tobytes(),
                    time.time(),
                ),
            )
            have += 1
    db.commit()
    db.close()
    return seed


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def reanalysis(ctx: Ctx) -> None:
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(images.c.sha256, images.c.path)
            .where(images.c.state == "present")
            .order_by(images.c.first_seen)
            .limit(4)
        ).all()
    imgs = [load(ctx.abs(r.path)) for r in rows]
    names = {e.name for e in ctx.extractors}
    done = {im.sha256: names - {"anomalies", "crop"} for im in imgs}
    wanted = {"anomalies", "crop"}
    # Warm the models once so neither figure pays for loading them.
    run_pass(ctx.extractors, imgs[:1], {imgs[0].sha256: names - wanted})

    def stored() -> None:
        with ctx.store.read() as conn:
            prior = {
                im.sha256: {n: r for n in NEEDED if (r := stored_result(ctx.cfg, conn, im.sha256, n)) is not None}
                for im in imgs
            }
        run_pass(ctx.extractors, imgs, done, prior)

    with_store = min(timed(stored) for _ in range(3)) / len(imgs)
    rerun = timed(lambda: run_pass(ctx.extractors, imgs, done)) / len(imgs)
    print(
        f"re-analysis (anomalies + crop) per image: {with_store:.1f} ms with stored detections, "
        f"{rerun:.0f} ms rerunning the detectors"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        ctx = seed_root(root)
        print(f"seed: {'shared AI portraits' if SHARED.is_dir() else 'generated PNGs'}, extractors {EXTRACTORS}")
        reanalysis(ctx)
        for size in sorted({1_000, args.images}):
            seed = grow(root / "bestshot.sqlite", size)
            ctx.prior_fit = None

            def prior() -> None:
                with ctx.store.read() as conn:
                    current_model(ctx, conn)

            def signals(shas: list[str] = seed[:4]) -> None:
                with ctx.store.read() as conn:
                    signals_for(conn, shas)

            first, again = timed(prior), timed(prior)
            sig = min(timed(signals) for _ in range(5))
            dup_full = timed(lambda: refresh_duplicates(ctx, full=True))
            grow(root / "bestshot.sqlite", size + 4)  # a new set of 4 arrives
            modes: list[str] = []
            dup_new = timed(lambda: modes.append(refresh_duplicates(ctx).mode))  # noqa: B023
            pq = timed(lambda: export_parquet(ctx))
            print(
                f"{size:>6} images: prior fit {first:7.0f} ms, next round {again:5.1f} ms | signals of a set of 4 "
                f"{sig:5.1f} ms | duplicates: full {dup_full:6.0f} ms, a new set of 4 ({modes[0]}) {dup_new:5.0f} ms"
                f" | parquet {pq:5.0f} ms"
            )


if __name__ == "__main__":
    main()
