"""The long-running daemon: observer + settle timer + scheduler feeding one worker (this thread).

The worker blocks on the event queue (no polling): it wakes for an event, for the next
quiet-period set closing, or to run queued extraction when no event is waiting. Each wake-up
hands the events to the pipeline's engine, then runs one round of the pipeline
(daemon/pipeline.py, where the steps and their order are).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from core.errors import BestshotError
from core.events import Event, LearnedFilesChanged, RescanRequested, RetrainRequested
from core.layout import locate
from daemon.app import reload_learned
from daemon.context import Ctx
from daemon.extractors.progress import DrainProgress
from daemon.files.health import note_write_failure
from daemon.instance import InstanceLock
from daemon.pipeline import Pipeline
from daemon.review.server import QueueWriter, ReviewCall, ReviewServer, make_app
from daemon.review.service import ReviewService
from daemon.store import records
from daemon.watch.settle import Settler
from daemon.watch.watcher import start_observer

log = logging.getLogger(__name__)
RETRY_SECONDS = 1.0  # while writes fail, how often the worker wakes to try again


class Daemon:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.settler = Settler(self.events)  # type: ignore[arg-type]
        self.pipeline = Pipeline(ctx, self.settler, progress=DrainProgress())
        self.engine = self.pipeline.engine
        self.engine.should_stop = lambda: self.stopping.is_set()
        self.tracker = self.pipeline.tracker
        self.rank = self.pipeline.rank
        self.stopping = threading.Event()
        self.review: ReviewServer | None = None
        self._learned_changed = False
        self._busy = True  # something was done since the worker last said it is idle

    def request_stop(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        self.stopping.set()
        # Wake the worker from another thread: a signal handler runs on the main thread, which
        # may be inside the queue's own lock, so putting from here could deadlock.
        threading.Thread(target=self.events.put, args=(None,), daemon=True).start()

    def run(self) -> int:
        cfg = self.ctx.cfg
        lock = InstanceLock(cfg.root, command="run", mode=cfg.mode)
        lock.acquire()
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        self.pipeline.recover(self._guard)
        models = cfg.path("models")
        observer = start_observer(
            cfg.root,
            self.events,  # type: ignore[arg-type]
            lambda p: locate(cfg, p).area is not None,
            lambda p: p.is_relative_to(models),
        )
        self.settler.start()
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(
            lambda: self.events.put(RescanRequested("timer")),
            "interval",
            minutes=cfg.watch.reconcile_minutes,
            id="reconcile",
            coalesce=True,
            max_instances=1,
        )
        scheduler.add_job(
            lambda: self.events.put(RetrainRequested("nightly")),
            "cron",
            hour=cfg.rank.nightly_retrain_hour,
            id="retrain",
            coalesce=True,
            max_instances=1,
        )
        scheduler.start()
        self.events.put(RescanRequested("start-up"))
        if cfg.review.enabled:
            self._guard("review page", self._start_review)
        log.info("bestshot daemon running on %s (db %s)", cfg.root, cfg.db_url)
        log.info(
            "drop images into %s: loose files, or one folder per set (its name is kept); "
            "then curate raw/ in Finder into exports/approved, to_crop, rejected",
            cfg.path("inbox"),
        )
        try:
            self._loop()
            log.info("stopping")
        finally:
            if self.review is not None:
                self.review.stop()
            scheduler.shutdown(wait=False)
            observer.stop()
            self.settler.stop()
            observer.join(timeout=2)
            for e in self.ctx.extractors:
                e.close()
            self.ctx.store.close()
            lock.release()
            log.info("stopped")
        return 0

    def _loop(self) -> None:
        next_close: float | None = None
        work_pending = True
        while not self.stopping.is_set():
            if work_pending:
                timeout: float | None = 0.0
            elif next_close is not None:
                timeout = max(0.05, next_close - time.time())
            else:
                timeout = None  # nothing to do: sleep until an event arrives
            retrying = self._retrying()
            if retrying:
                timeout = RETRY_SECONDS if timeout is None else min(timeout, RETRY_SECONDS)
            if timeout != 0.0 and self._busy and not retrying:
                self._busy = False
                log.debug("worker idle")  # every event so far handled, no extraction left
            try:
                ev = self.events.get(timeout=timeout)
            except queue.Empty:
                ev = None
            else:
                if ev is None:
                    continue
            failures = self._failures()
            if self.engine.retry:
                self.engine.retry_failed()
            if ev is not None:
                self._handle(ev)
                while not self.stopping.is_set():  # drain whatever else is already waiting
                    try:
                        more = self.events.get_nowait()
                    except queue.Empty:
                        break
                    if more is not None:
                        self._handle(more)
            if self._learned_changed:  # its re-analysis jobs are queued: run them
                self._learned_changed = False
                self.pipeline.queue_more()
            r = self.pipeline.round(self._guard)
            if self.stopping.is_set():
                break
            work_pending, next_close = r.extracted > 0, r.next_deadline
            self._busy = self._busy or work_pending
            self._check_recovered(failures)

    def _failures(self) -> int:
        return self.ctx.health.failures if self.ctx.health is not None else 0

    def _retrying(self) -> bool:
        health = self.ctx.health
        return bool(self.engine.retry) or self.tracker.retry_pending or (health is not None and health.failing)

    def _check_recovered(self, failures_before: int) -> None:
        """While writes were failing: once a round has written without a failure, say so."""
        health = self.ctx.health
        if health is None or not health.failing or health.failures != failures_before:
            return
        try:
            with self.ctx.store.write() as conn:
                records.put_state(conn, "last_write_check", time.time())
        except Exception as e:
            if not note_write_failure(health, "checking that writes work", e):
                raise
            return
        if not self.engine.retry and not self.tracker.retry_pending:
            health.recovered()

    def _guard(self, what: str, step: Callable[[], object]) -> object:
        """Run one step of the loop; an unexpected failure is logged and recorded, never fatal.

        Failing steps are retried on the next wake-up (an event, a timer), not in a tight loop.
        """
        try:
            return step()
        except Exception as e:
            if note_write_failure(self.ctx.health, what, e):
                return None  # the disk is full: recording it would fail too; retried on the next round
            log.exception("%s failed", what)
            try:
                with self.ctx.store.write() as conn:
                    records.record_error(conn, None, what, BestshotError(None, f"{type(e).__name__}: {e}"))
            except Exception:
                log.exception("cannot record the failure of %s", what)
            return None

    def _start_review(self) -> None:
        """The review page, its actions run on this worker (QueueWriter): one writer per root."""
        server = ReviewServer(self.ctx.cfg.root, self.ctx.cfg.review.port)
        service = ReviewService(self.ctx, self.tracker)
        writer = QueueWriter(self.events.put)  # type: ignore[arg-type]
        server.start_thread(make_app(service, writer, server.token, lambda: server.port))
        self.review = server
        log.info("review page: %s", server.url)

    def _handle(self, ev: Event) -> None:
        if isinstance(ev, LearnedFilesChanged):  # often our own model files: not work unless it changed
            if self._guard("learned state", lambda: reload_learned(self.ctx)):
                self.rank.mode = None  # the training run may have changed it: decide again
                self._learned_changed = self._busy = True
            return
        self._busy = True
        if isinstance(ev, ReviewCall):
            ev.run()
        elif isinstance(ev, RetrainRequested):
            self._guard("retrain", lambda: self.rank.retrain(ev.reason))
        else:
            self.engine.handle(ev)


def run_daemon(ctx: Ctx) -> int:
    return Daemon(ctx).run()
