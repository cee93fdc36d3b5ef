"""After each quiet moment of the worker: propose, decide in batch mode, follow decisions with
mode changes and retraining. One object so the daemon and `scan` run the same loop."""

from __future__ import annotations

import logging

from core.errors import BestshotError
from core.rank.modes import ModeDecision
from daemon.context import Ctx
from daemon.labels.decide import DecisionTracker
from daemon.rank import ranking
from daemon.rank.batch import run_batch
from daemon.rank.ranking import make_proposals, proposals_waiting, refresh_review_links
from daemon.rank.train import retrain_due, run_training, update_mode
from daemon.store import records

log = logging.getLogger(__name__)


class RankLoop:
    def __init__(self, ctx: Ctx, tracker: DecisionTracker) -> None:
        self.ctx = ctx
        self.tracker = tracker
        self._seen_decisions = -1
        self.mode: ModeDecision | None = None
        # Sets are still due after this round (it proposed PROPOSALS_PER_ROUND): run another at once.
        self.more = False
        self._links_stale = False

    def round(self) -> None:
        self.more = False
        try:
            if self.tracker.recorded != self._seen_decisions or self.mode is None:
                self._seen_decisions = self.tracker.recorded
                if retrain_due(self.ctx):
                    run_training(self.ctx)
                self.mode = update_mode(self.ctx)
            made = make_proposals(self.ctx, self.mode.mode, ranking.PROPOSALS_PER_ROUND)
            self.more = proposals_waiting(self.ctx)
            if made:
                log.info("proposed winners for %d sets (%s mode)", len(made), self.mode.mode)
                self._links_stale = self._links_stale or self.mode.mode != "watch"
            if self._links_stale and not self.more:
                # Once per run of rounds: the links are numbered over every uncertain open set.
                self._links_stale = False
                refresh_review_links(self.ctx)
            if self.mode.mode == "batch":
                run_batch(self.ctx, self.mode, self.tracker)
        except BestshotError as e:
            with self.ctx.store.write() as conn:
                records.record_error(conn, None, "rank", e)

    def retrain(self, reason: str) -> None:
        log.info("retraining (%s)", reason)
        try:
            run_training(self.ctx)
            self.mode = update_mode(self.ctx)
        except BestshotError as e:
            with self.ctx.store.write() as conn:
                records.record_error(conn, None, "train", e)
