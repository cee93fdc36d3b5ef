"""`bestshot log [FILE]`: record decision lines from another tool (stdin or a file) as observed ones."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daemon import logsetup
from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("log", help="record decision lines (session.jsonl schema) from stdin or a file")
    p.add_argument("file", nargs="?", type=Path, help="JSON lines file (default: stdin)")
    add_common(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from core.labels.log_input import parse_lines
    from daemon.app import build_ctx
    from daemon.decisions import DecisionTracker
    from daemon.store.schema import decisions, sets

    cfg = config_from_args(args)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    if args.file is not None:
        text = args.file.read_text(encoding="utf-8").splitlines()
    else:
        text = sys.stdin.read().splitlines()
    valid, invalid = parse_lines(text, args.file)
    ctx = build_ctx(cfg, with_extractors=False)
    tracker = DecisionTracker(ctx)
    for line in valid:
        raw_id = line.set_id[4:] if line.set_id.startswith("set_") else line.set_id
        with ctx.store.read() as conn:
            known = conn.execute(select(sets.c.id).where(sets.c.id == raw_id)).first()
            prev = conn.execute(
                select(decisions.c.id)
                .where(decisions.c.set_id == (raw_id if known else line.set_id))
                .order_by(decisions.c.id.desc())
                .limit(1)
            ).scalar()
        tracker.record(raw_id if known else None, line, None, "log", prev)
    for lineno, reason in invalid:
        print(f"line {lineno}: rejected: {reason}", file=sys.stderr)
    print(f"log: {len(valid)} lines recorded, {len(invalid)} rejected")
    return 0 if not invalid else 1
