"""sidecar/embeddings.parquet and sidecar/hashes.parquet, rewritten from the database."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from core.atomicfile import atomic_write
from core.layout import from_db_path
from daemon.context import Ctx
from daemon.store.schema import images, sidecars


def _write(table: pa.Table, target: Path) -> None:
    atomic_write(target, lambda f: pq.write_table(table, f))  # readers never see a half-written file


def _latest(rows: Sequence[Any]) -> list[Any]:
    """One row per image: its newest extractor version (older versions stay in the DB)."""
    best: dict[str, Any] = {}
    for r in rows:
        if r.sha256 not in best or r.version > best[r.sha256].version:
            best[r.sha256] = r
    return [best[k] for k in sorted(best)]


def _list_column(vectors: Sequence[np.ndarray]) -> pa.Array:
    """list<float32> from the vectors' buffers (no Python floats: 10,000 x 512 in milliseconds)."""
    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in vectors], out=offsets[1:])
    values = np.concatenate(vectors).astype(np.float32, copy=False) if vectors else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def export_parquet(ctx: Ctx) -> dict[str, int]:
    side = ctx.cfg.path("sidecar")
    with ctx.store.read() as conn:
        paths = {r.sha256: from_db_path(r.path) for r in conn.execute(select(images.c.sha256, images.c.path))}
        emb_rows = _latest(
            conn.execute(
                select(sidecars.c.sha256, sidecars.c.version, sidecars.c.payload, sidecars.c.blob)
                .where(sidecars.c.extractor == "clip", sidecars.c.blob.is_not(None))
                .order_by(sidecars.c.sha256)
            ).all()
        )
        hash_rows = _latest(
            conn.execute(
                select(sidecars.c.sha256, sidecars.c.version, sidecars.c.payload)
                .where(sidecars.c.extractor == "phash")
                .order_by(sidecars.c.sha256)
            ).all()
        )
    emb_payloads = [json.loads(r.payload) for r in emb_rows]
    vectors = [np.frombuffer(r.blob, dtype="<f4") for r in emb_rows]
    emb = pa.table(
        {
            "sha256": [r.sha256 for r in emb_rows],
            "path": [paths.get(r.sha256) for r in emb_rows],
            "model": [p.get("model") for p in emb_payloads],
            "pretrained": [p.get("pretrained") for p in emb_payloads],
            "extractor_version": pa.array([r.version for r in emb_rows], pa.int32()),
            "embedding": _list_column(vectors),
        }
    )
    hashes = pa.table(
        {
            "sha256": [r.sha256 for r in hash_rows],
            "path": [paths.get(r.sha256) for r in hash_rows],
            "phash": [json.loads(r.payload)["phash"] for r in hash_rows],
            "extractor_version": pa.array([r.version for r in hash_rows], pa.int32()),
        }
    )
    _write(emb, side / "embeddings.parquet")
    _write(hashes, side / "hashes.parquet")
    return {"embeddings": emb.num_rows, "hashes": hashes.num_rows}


# The files hold every image, so rewriting them costs what the library weighs (seconds at 40,000
# images), not what changed. The daemon rewrites them after its extraction queue drains, but waits
# this many times the last rewrite's duration after it: the rewrites take at most 1/(1 + SHARE)
# of the worker's time however fast sets arrive, and the files lag the database by at most that.
SHARE = 20.0


class ExportSchedule:
    """When the running daemon rewrites sidecar/*.parquet (`bestshot scan` and `export` write at once)."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.due: float | None = None
        self._earliest = 0.0

    def changed(self) -> None:
        """New sidecars are in the database: export at the first moment the share allows."""
        if self.due is None:
            self.due = max(time.time(), self._earliest)

    def flush(self) -> bool:
        """Export now if anything waits (a one-shot `scan` ends with its files written)."""
        if self.due is None:
            return False
        self.due = time.time()
        return self.run_if_due()

    def run_if_due(self) -> bool:
        if self.due is None or time.time() < self.due:
            return False
        t0 = time.monotonic()
        export_parquet(self.ctx)
        self.due = None
        self._earliest = time.time() + SHARE * (time.monotonic() - t0)
        return True

    def deadline(self) -> float | None:
        """When the worker must wake for a deferred export (None: nothing waits)."""
        return self.due
