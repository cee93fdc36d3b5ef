"""What the daemon (and `scan`) do first after a crash, in this order: the journal before anything
reads file locations, interrupted batch sets once every single move is settled, the session log
once the decisions it mirrors are final, and only then re-evaluation of the open sets."""

from __future__ import annotations

import logging
from collections.abc import Callable

from daemon.context import Ctx
from daemon.extractors import jobs
from daemon.labels.decide import DecisionTracker
from daemon.labels.session import flush_unlogged
from daemon.labels.tidy import tidy_leftovers
from daemon.rank.batch import recover_interrupted_batches

log = logging.getLogger(__name__)
Step = Callable[[Ctx, DecisionTracker], object]


def _requeue_jobs(ctx: Ctx, _tracker: DecisionTracker) -> int:
    with ctx.store.write() as conn:
        n = jobs.reset_interrupted(conn)
    if n:
        log.info("re-queued %d jobs interrupted by a crash", n)
    return n


STARTUP_STEPS: tuple[tuple[str, Step], ...] = (
    ("journal recovery", lambda ctx, _t: ctx.fileops.recover()),
    ("job recovery", _requeue_jobs),
    ("batch recovery", recover_interrupted_batches),
    ("session log recovery", lambda ctx, _t: flush_unlogged(ctx)),
    ("decision recovery", lambda _ctx, tracker: tracker.mark_active_sets()),
    ("decided set tidy", tidy_leftovers),
)
