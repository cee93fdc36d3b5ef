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
    from daemon.instance import InstanceLock
    from daemon.pipeline import Pipeline

    cfg = config_from_args(args, mode=args.mode)
    logsetup.divert_native_output(cfg)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    ctx = build_ctx(cfg, with_extractors=not args.no_extract)
    lock = InstanceLock(cfg.root, command="scan", mode=cfg.mode)
    lock.acquire()
    bars: list[tqdm] = []  # made once the queue's length is known
    try:
        pipeline = Pipeline(ctx)
        pipeline.run_to_completion(
            queued=lambda total: bars.append(
                tqdm(total=total, unit="img", desc="sidecars", disable=not sys.stderr.isatty() or total == 0)
            ),
            extracted=lambda n: bars[0].update(n),
        )
        s = pipeline.engine.stats
        print(f"scan: {s['registered']} images registered, {s['sets_filed']} sets filed, {s['errors']} errors")
        return 0
    finally:
        for bar in bars:
            bar.close()
        for e in ctx.extractors:
            e.close()
        lock.release()
