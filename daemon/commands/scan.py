"""`bestshot scan`: ingest everything present, run queued work to completion, exit."""

from __future__ import annotations

import argparse
import sys

from daemon import logsetup
from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("scan", help="one-shot: ingest everything present, finish queued work, exit")
    add_common(p)
    p.add_argument("--mode", choices=["auto", "watch", "recommend", "batch"], help="pin the mode")
    p.add_argument("--no-extract", action="store_true", help="ingest and file sets only")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from daemon.app import build_ctx
    from daemon.dedup import refresh_duplicates
    from daemon.extractors import jobs
    from daemon.extractors.extract import run_extract_pass
    from daemon.files.recovery import STARTUP_STEPS
    from daemon.instance import InstanceLock
    from daemon.labels.decide import DecisionTracker
    from daemon.rank.loop import RankLoop
    from daemon.store.parquet_export import export_parquet
    from daemon.watch.engine import Engine

    cfg = config_from_args(args, mode=args.mode)
    logsetup.divert_native_output(cfg)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    ctx = build_ctx(cfg, with_extractors=not args.no_extract)
    lock = InstanceLock(cfg.root, command="scan", mode=cfg.mode)
    lock.acquire()
    try:
        engine = Engine(ctx, settler=None)
        tracker = DecisionTracker(ctx)
        engine.move_observers.append(tracker.on_move)
        engine.unknown_observers.append(tracker.on_unknown_file)
        for _what, step in STARTUP_STEPS:
            step(ctx, tracker)
        engine.reconcile(direct=True)
        with ctx.store.read() as conn:
            total = len(jobs.next_images(conn, 10**9))
        with tqdm(total=total, unit="img", desc="sidecars", disable=not sys.stderr.isatty() or total == 0) as bar:
            while n := run_extract_pass(ctx):
                bar.update(n)
        engine.file_ready_sets(force_close=True)  # loose files group by their pHash: after the passes
        refresh_duplicates(ctx)
        export_parquet(ctx)
        tracker.evaluate()
        RankLoop(ctx, tracker).round()
        s = engine.stats
        print(f"scan: {s['registered']} images registered, {s['sets_filed']} sets filed, {s['errors']} errors")
        return 0
    finally:
        for e in ctx.extractors:
            e.close()
        lock.release()
