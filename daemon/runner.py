"""The long-running daemon: observer + settle timer + scheduler feeding one worker (this thread).

The worker blocks on the event queue (no polling): it wakes for an event, for the next
quiet-period set closing, or to run queued extraction when no event is waiting.
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

from core.events import Event, RescanRequested, RetrainRequested
from daemon import jobs
from daemon.app import InstanceLock
from daemon.context import Ctx
from daemon.decisions import DecisionTracker
from daemon.duplicates import refresh_duplicates
from daemon.engine import Engine
from daemon.extract import run_extract_pass
from daemon.parquet_export import export_parquet
from daemon.rank_loop import RankLoop
from daemon.session_log import flush_unlogged
from daemon.settle import Settler
from daemon.watcher import start_observer

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.settler = Settler(self.events)  # type: ignore[arg-type]
        self.engine = Engine(ctx, self.settler)
        self.tracker = DecisionTracker(ctx)
        self.engine.move_observers.append(self.tracker.on_move)
        self.engine.unknown_observers.append(self.tracker.on_unknown_file)
        self.rank = RankLoop(ctx, self.tracker)
        self.stopping = threading.Event()
        self.after_pass: list[Callable[[], None]] = []  # e.g. proposals, once sidecars are in

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if not self.stopping.is_set():
            log.info("stopping (signal %s)", signum)
        self.stopping.set()
        self.events.put(None)

    def run(self) -> int:
        cfg = self.ctx.cfg
        lock = InstanceLock(cfg.root)
        lock.acquire()
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        for line in self.ctx.fileops.recover():
            log.info(line)
        with self.ctx.store.write() as conn:
            n = jobs.reset_interrupted(conn)
        if n:
            log.info("re-queued %d jobs interrupted by a crash", n)
        flushed = flush_unlogged(self.ctx)
        if flushed:
            log.info("completed %d session lines interrupted by a crash", flushed)
        self.tracker.mark_active_sets()
        observer = start_observer(cfg.root, self.events)  # type: ignore[arg-type]
        self.settler.start()
        scheduler = BackgroundScheduler(daemon=True)
        scheduler.add_job(lambda: self.events.put(RescanRequested("timer")), "interval",
                          minutes=cfg.watch.reconcile_minutes, id="reconcile", coalesce=True, max_instances=1)
        scheduler.add_job(lambda: self.events.put(RetrainRequested("nightly")), "cron",
                          hour=cfg.rank.nightly_retrain_hour, id="retrain", coalesce=True, max_instances=1)
        scheduler.start()
        self.events.put(RescanRequested("start-up"))
        log.info("bestshot daemon running on %s (db %s)", cfg.root, cfg.db_url)
        try:
            self._loop()
        finally:
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
            try:
                ev = self.events.get(timeout=timeout)
            except queue.Empty:
                ev = None
            else:
                if ev is None:
                    continue
            if ev is not None:
                self._handle(ev)
                while not self.stopping.is_set():  # drain whatever else is already waiting
                    try:
                        more = self.events.get_nowait()
                    except queue.Empty:
                        break
                    if more is not None:
                        self._handle(more)
            deadlines = [t for t in (self.engine.file_ready_sets(), self.tracker.evaluate()) if t is not None]
            next_close = min(deadlines, default=None)
            if self.stopping.is_set():
                break
            # One batch at a time, then back to the queue, so new files are never starved by a backlog.
            was_pending = work_pending
            work_pending = run_extract_pass(self.ctx) > 0
            if was_pending and not work_pending:  # the queue just drained
                refresh_duplicates(self.ctx)
                export_parquet(self.ctx)
            if not work_pending:
                self.rank.round()
            for hook in self.after_pass:
                hook()

    def _handle(self, ev: Event) -> None:
        if isinstance(ev, RetrainRequested):
            self.rank.retrain(ev.reason)
        else:
            self.engine.handle(ev)


def run_daemon(ctx: Ctx) -> int:
    return Daemon(ctx).run()
