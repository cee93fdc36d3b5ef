"""The whole pipeline, assembled in one place: from a settled file to a decided set.

`run` drives it round by round as events arrive; `scan`, `review`'s catch-up, the tests and the
benchmarks use the same object. In order:

1. start-up recovery (daemon/files/recovery.py): journal, jobs, batch sets, session log, open sets;
2. the Engine turns file-system events into work: each settled file goes through the image
   stages (daemon/ingest/stages.py: stat, read, decode, metadata, register), which hand its pixels to
   the first extraction pass (run here as soon as a pass's worth is waiting; `scan` reads,
   hashes and decodes the next few files ahead: daemon/ingest/prefetch.py); files elsewhere
   are tracked, and their moves and tag changes go to the DecisionTracker;
3. a round (`Pipeline.round`, ROUND lists its steps):
   - idle models unload after `extractors.unload_idle_seconds`;
   - filing: each closed set through the set stages (persist, file); loose files wait for
     their pHash;
   - decisions: sets the user finished are decided and their session lines written;
   - one extraction pass: every pending extractor, pHash included, over up to
     `extractors.images_per_pass` images, each decoded once;
   - with the queue empty, `scan` closes the open loose sets (every pHash is in by then);
   - when the queue drained or sets were filed since: near-duplicate groups and marks, then
     the parquet export;
   - with the queue empty: proposals, batch decisions, retraining, mode changes (RankLoop);
     a round proposes at most PROPOSALS_PER_ROUND sets, and the next comes at once while sets
     are still due.

The daemon goes back to its events between rounds, so a backlog never starves new files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from daemon.context import Ctx
from daemon.dedup import mark_filed_sets, refresh_duplicates
from daemon.extractors import jobs
from daemon.extractors.extract import run_extract_pass
from daemon.extractors.idle_models import IdleModels
from daemon.extractors.progress import DrainProgress
from daemon.files.recovery import STARTUP_STEPS
from daemon.labels.decide import DecisionTracker
from daemon.rank.loop import RankLoop
from daemon.store.parquet_export import ExportSchedule
from daemon.watch.engine import Engine
from daemon.watch.settle import Settler

log = logging.getLogger(__name__)

# A step of the pipeline is run through a guard: the daemon records a failure and goes on;
# `scan` and the tests let it end them (strict).
Guard = Callable[[str, Callable[[], object]], object]

# The steps of a round, in the order Pipeline.round runs them (names as failures are recorded).
ROUND: tuple[str, ...] = (
    "model unload",
    "filing",
    "decisions",
    "extraction",
    "closing open sets",
    "duplicates",
    "parquet export",
    "ranking",
)


def strict(_what: str, step: Callable[[], object]) -> object:
    return step()


@dataclass(frozen=True)
class Round:
    extracted: int  # images the round's extraction pass handled (0: the queue is empty)
    next_deadline: float | None  # when a set closes, a decision times out or models unload


class Pipeline:
    """`without`: steps of ROUND a caller runs itself (a test of one of them), never run here."""

    def __init__(
        self,
        ctx: Ctx,
        settler: Settler | None = None,
        *,
        progress: DrainProgress | None = None,
        without: Collection[str] = (),
    ) -> None:
        unknown = set(without) - set(ROUND)
        if unknown:
            raise ValueError(f"not steps of a round: {sorted(unknown)}")
        self.ctx = ctx
        self.engine = Engine(ctx, settler)
        self.tracker = DecisionTracker(ctx)
        self.engine.move_observers.append(self.tracker.on_move)
        self.engine.unknown_observers.append(self.tracker.on_unknown_file)
        self.engine.touch_observers.append(self.tracker.on_touch)
        self.engine.on_registered = self._extract_handed_off
        self.rank = RankLoop(ctx, self.tracker)
        self.models = IdleModels(ctx)
        self.progress = progress
        self.without = frozenset(without)
        self.parquet = ExportSchedule(ctx)
        self._queue_was_busy = True  # the first empty round refreshes duplicates and the export

    def recover(self, guard: Guard = strict) -> None:
        """Step 1, before any event is handled."""
        for what, step in STARTUP_STEPS:
            guard(what, lambda step=step: step(self.ctx, self.tracker))  # type: ignore[misc]

    def round(self, guard: Guard = strict, *, close_open: bool = False) -> Round:
        """One round of step 3. `close_open` (scan): once nothing is left to extract, file the
        loose sets still open instead of waiting for their quiet time."""
        run = self._runner(guard)
        run("model unload", self.models.unload_if_idle)
        deadlines = [run("filing", self.engine.file_ready_sets), run("decisions", self.tracker.evaluate)]
        deadlines.append(self.models.deadline())
        if self.engine.should_stop():
            return Round(0, None)
        n = run("extraction", self._extract_pass)
        extracted = n if isinstance(n, int) else 0
        if extracted:
            self.models.used()
        elif close_open:
            run("closing open sets", lambda: self.engine.file_ready_sets(force_close=True))
        drained, self._queue_was_busy = self._queue_was_busy and not extracted, extracted > 0
        if drained or (not extracted and self.engine.filed):
            filed, self.engine.filed = self.engine.filed, []
            if not run("duplicates", lambda: self._duplicates(filed)) and "duplicates" not in self.without:
                self.engine.filed[:0] = filed  # failed: their marks are tried again next round
            self.parquet.changed()
        if not extracted:
            if self.parquet.due is not None:  # a round with nothing new does not touch the export
                run("parquet export", self.parquet.run_if_due)
            run("ranking", self.rank.round)
            if self.rank.more:  # sets still due: the next round comes at once, after the events waiting
                deadlines.append(time.time())
        deadlines.append(self.parquet.deadline())  # a deferred rewrite wakes the worker
        return Round(extracted, min((t for t in deadlines if isinstance(t, float)), default=None))

    def queue_more(self) -> None:
        """Work was queued outside a round (a new model's re-analysis): its drain counts."""
        self._queue_was_busy = True

    def run_to_completion(
        self,
        guard: Guard = strict,
        *,
        recover: bool = True,
        queued: Callable[[int], None] | None = None,
        extracted: Callable[[int], None] | None = None,
    ) -> None:
        """`scan`: recover, ingest everything present, then rounds until nothing is left to
        extract, closing the open sets at the end. `queued` is told how many images wait for
        the extractors once everything is ingested; `extracted`, each pass's images."""
        if recover:
            self.recover(guard)
        self.engine.reconcile(direct=True)
        if queued is not None:
            with self.ctx.store.read() as conn:
                queued(len(jobs.next_images(conn, 10**9)))
        while (r := self.round(guard, close_open=True)).extracted or self.rank.more:
            if extracted is not None and r.extracted:
                extracted(r.extracted)
        self._runner(guard)("parquet export", self.parquet.flush)  # a one-shot run writes them at once

    def _runner(self, guard: Guard) -> Callable[[str, Callable[[], object]], object]:
        def run(what: str, step: Callable[[], object]) -> object:
            return None if what in self.without else guard(what, step)

        return run

    def _duplicates(self, filed: list[str]) -> bool:
        refresh_duplicates(self.ctx)
        mark_filed_sets(self.ctx, filed)
        return True

    def _extract_pass(self) -> int:
        if self.progress is not None:
            self.progress.before_pass()
        handled = run_extract_pass(self.ctx)
        if self.progress is not None:
            with self.ctx.store.read() as conn:
                remaining = jobs.pending_images(conn) if handled else 0
            if line := self.progress.step(handled, remaining):
                log.info("%s", line)
        return handled

    def _extract_handed_off(self) -> None:
        if self.ctx.handoff_full():
            # A pass's worth of decoded images is waiting: extract them before decoding more.
            self.models.used()  # else the next round would unload the models this pass loads
            run_extract_pass(self.ctx)
