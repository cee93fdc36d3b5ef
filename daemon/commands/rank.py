"""`bestshot train | queue | metrics | undo`: the ranking loop by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from daemon import logsetup
from daemon.cli import add_common, config_from_args, require_library


def register(subs: argparse._SubParsersAction) -> None:
    # No --device: training reads stored sidecars and fits in numpy; it runs no extractor.
    p = subs.add_parser("train", help="train the ranking model on the decisions so far")
    add_common(p)
    p.set_defaults(handler=handle_train)

    p = subs.add_parser("queue", help="print the review order: uncertain sets first")
    add_common(p)
    p.add_argument("--json", action="store_true", help="print the queue as one JSON list")
    p.set_defaults(handler=handle_queue)

    p = subs.add_parser("metrics", help="agreement, crop acceptance, residual anomalies; writes a PNG chart")
    add_common(p)
    p.add_argument("--last", type=int, default=300, help="chart the last N decided sets")
    p.add_argument("--out", type=Path, help="chart file (default <root>/labels/metrics.png)")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(handler=handle_metrics)

    p = subs.add_parser("undo", help="move every file of a batch back where it was")
    p.add_argument("batch_id", nargs="?", help="omit to list batches")
    add_common(p)
    p.set_defaults(handler=handle_undo)


def handle_train(args: argparse.Namespace) -> int:
    from daemon.app import build_ctx
    from daemon.rank.train import run_training, update_mode

    cfg = config_from_args(args)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    ctx = build_ctx(cfg, with_extractors=False)
    out = run_training(ctx)
    mode = update_mode(ctx)
    if out.version is None:
        print(f"train: no model ({out.reason}); proposals keep using the prior")
    else:
        state = "now in use" if out.switched else "kept on file, not switched in"
        print(f"train: {out.version} on {out.decisions} decisions, {state}: {out.reason}")
    print(f"mode: {mode.mode} ({mode.reason})")
    return 0


def handle_queue(args: argparse.Namespace) -> int:
    from daemon.context import reading_ctx
    from daemon.rank.ranking import review_queue

    cfg = config_from_args(args)
    require_library(cfg)
    items = review_queue(reading_ctx(cfg))
    if args.json:
        print(json.dumps(items))
        return 0
    for i, it in enumerate(items, 1):
        flag = "CHECK" if it["uncertain"] else "     "
        why = "; ".join(it["uncertain_reasons"] or it["reasons"])
        if len(it["images"]) == 1:  # nothing to choose between: keep it or reject it
            print(f"{i:>3}. {flag} {it['set_id']}  single image {it['winner']}" + (f"  {why}" if why else ""))
            continue
        print(
            f"{i:>3}. {flag} {it['set_id']}  winner {it['winner']} of {len(it['images'])}  p={it['confidence']:.2f}  "
            f"margin {it['margin']:.2f}  {why}"
        )
    if not items:
        print("queue: no open proposals")
    return 0


def handle_metrics(args: argparse.Namespace) -> int:
    from daemon.app import build_ctx
    from daemon.rank.metrics import compute_metrics, write_chart

    cfg = config_from_args(args)
    require_library(cfg)
    ctx = build_ctx(cfg, with_extractors=False)
    m = compute_metrics(ctx)
    if m["decided_sets"] == 0:
        if args.json:
            print(json.dumps(dict(m, chart=None)))
        else:
            print(
                "metrics: no decided sets yet, so nothing to measure or chart. Decide a set in Finder "
                "(move its best image to exports/approved/) and run this again."
            )
        return 0
    out = args.out or cfg.path("labels") / "metrics.png"
    write_chart(ctx, out, args.last)
    if args.json:
        print(json.dumps(dict(m, chart=str(out))))
        return 0
    for k, v in m.items():
        print(f"{k:<28} {v if v is not None else '-'}")
    print(f"chart: {out}")
    return 0


def handle_undo(args: argparse.Namespace) -> int:
    from daemon.app import build_ctx
    from daemon.instance import InstanceLock
    from daemon.labels.decide import DecisionTracker
    from daemon.rank.batch import batch_ids, undo_batch

    cfg = config_from_args(args)
    require_library(cfg)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    ctx = build_ctx(cfg, with_extractors=False)
    if not args.batch_id:
        ids = batch_ids(ctx)
        if not ids:
            print("undo: no batches to undo (bestshot has not moved any files by itself on this root)")
        for b in ids:
            print(b)
        return 0
    lock = InstanceLock(cfg.root, command="undo", mode=cfg.mode)
    lock.acquire()  # undo moves files: not while the daemon itself is moving them
    try:
        # An earlier undo (or daemon) killed mid-move left journal rows planned: settle them
        # first, so this undo finishes that work instead of leaving it for the next daemon start.
        for line in ctx.fileops.recover():
            print(f"  recovered: {line}")
        n = undo_batch(ctx, args.batch_id, DecisionTracker(ctx))
    finally:
        lock.release()
    print(f"undo {args.batch_id}: {n} files moved back")
    for problem in ctx.fileops.last_problems:
        print(f"  not restored: {problem}")
    return 0 if not ctx.fileops.last_problems else 1
