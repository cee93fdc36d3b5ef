"""`bestshot review` without the daemon: nothing watches Finder meanwhile, so before the queue
is shown, moves the user made there are caught up like the daemon's reconcile does for the
export areas and raw/ (the inbox is left to the daemon: the page files nothing). The engine and
the decision tracker are the pipeline's (daemon/pipeline.py), wired as the daemon wires them;
of a round only its decisions step runs here."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import select

from core.layout import is_image_name
from daemon.pipeline import Pipeline
from daemon.store.schema import files, images, set_members, sets

AREAS = ("raw", "review_queue", "approved", "to_crop", "cropped", "rejected")


class CatchUp:
    def __init__(self, pipeline: Pipeline, min_interval: float = 2.0) -> None:
        self.engine = pipeline.engine
        self.tracker = pipeline.tracker
        self.ctx = pipeline.ctx
        self.min_interval = min_interval
        self._last = 0.0

    def stale(self) -> bool:
        """Some member of an open set is not where the database says: the user moved it."""
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(images.c.path)
                .join(set_members, set_members.c.sha256 == images.c.sha256)
                .join(sets, sets.c.id == set_members.c.set_id)
                .where(sets.c.status == "filed")
            ).all()
        return any(not self.ctx.abs(r.path).is_file() for r in rows)

    def __call__(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and (now - self._last < self.min_interval or not self.stale()):
            return False
        self._last = now
        seen: set[str] = set()
        for area in AREAS:
            base = self.ctx.cfg.path(area)
            for dp, dn, fn in os.walk(base, followlinks=False):
                dn[:] = sorted(x for x in dn if not x.startswith("."))
                for n in sorted(fn):
                    if is_image_name(n):
                        p = Path(dp) / n
                        seen.add(self.ctx.rel(p))
                        self.engine.track(p)
        bases = [self.ctx.rel(self.ctx.cfg.path(a)) + "/" for a in AREAS]
        with self.ctx.store.read() as conn:
            known = [r.path for r in conn.execute(select(files.c.path))]
        for rel in known:
            if rel not in seen and any(rel.startswith(b) for b in bases) and not self.ctx.abs(rel).exists():
                self.engine._deleted(self.ctx.abs(rel))
        self.tracker.evaluate()
        return True
