"""`bestshot train | queue | metrics | undo`: the ranking loop by hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from daemon import logsetup
from daemon.app import InstanceLock, build_ctx
from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("train", help="train the ranking model on the decisions so far")
    add_common(p)
    p.add_argument(
        "--device",
        choices=["auto", "mps", "cuda", "cpu"],
        default="auto",
        help="device for extractors; the ranking fit itself is numpy on the CPU at these sizes",
    )
    p.set_defaults(handler=handle_train)

    p = subs.add_parser("queue", help="print the review order: uncertain sets first")
    add_common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=handle_queue)

    p = subs.add_parser("metrics", help="agreement, crop acceptance, residual anomalies; writes a PNG chart")
    add_common(p)
    p.add_argument("--last", type=int, default=300, help="chart the last N decided sets")
    p.add_argument("--out", type=Path, help="chart file (default <root>/labels/metrics.png)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=handle_metrics)

    p = subs.add_parser("undo", help="move every file of a batch back where it was")
    p.add_argument("batch_id", nargs="?", help="omit to list batches")
    add_common(p)
    p.set_defaults(handler=handle_undo)


def handle_train(args: argparse.Namespace) -> int:
    from daemon.training import run_training, update_mode

    cfg = config_from_args(args)
    cfg = cfg.model_copy(update={"extractors": cfg.extractors.model_copy(update={"device": args.device})})
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
    from daemon.ranking import review_queue

    cfg = config_from_args(args)
    items = review_queue(build_ctx(cfg, with_extractors=False))
    if args.json:
        print(json.dumps(items))
        return 0
    for i, it in enumerate(items, 1):
        flag = "CHECK" if it["uncertain"] else "     "
        why = "; ".join(it["uncertain_reasons"] or it["reasons"])
        print(
            f"{i:>3}. {flag} {it['set_id']}  winner {it['winner']}  p={it['confidence']:.2f}  "
            f"margin {it['margin']:.2f}  {why}"
        )
    if not items:
        print("queue: no open proposals")
    return 0


def handle_metrics(args: argparse.Namespace) -> int:
    from daemon.metrics import compute_metrics, write_chart

    cfg = config_from_args(args)
    ctx = build_ctx(cfg, with_extractors=False)
    m = compute_metrics(ctx)
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
    from daemon.batch import batch_ids, undo_batch
    from daemon.decisions import DecisionTracker

    cfg = config_from_args(args)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    ctx = build_ctx(cfg, with_extractors=False)
    if not args.batch_id:
        for b in batch_ids(ctx):
            print(b)
        return 0
    lock = InstanceLock(cfg.root)
    lock.acquire()  # undo moves files: not while the daemon itself is moving them
    try:
        n = undo_batch(ctx, args.batch_id, DecisionTracker(ctx))
    finally:
        lock.release()
    print(f"undo {args.batch_id}: {n} files moved back")
    for problem in ctx.fileops.last_problems:
        print(f"  not restored: {problem}")
    return 0 if not ctx.fileops.last_problems else 1
