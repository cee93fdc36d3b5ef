"""`bestshot log [FILE]`: record decision lines from another tool (stdin or a file) as observed ones."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from daemon import logsetup
from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("log", help="record decision lines (session.jsonl schema) from stdin or a file")
    p.add_argument("file", nargs="?", type=Path, help="JSON lines file (default: stdin)")
    p.add_argument(
        "--allow-unknown",
        action="store_true",
        help="record lines for sets this root does not know (refused by default: a typo in set_id)",
    )
    add_common(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from core.labels.log_input import parse_numbered_lines
    from daemon.app import build_ctx
    from daemon.labels.decide import DecisionTracker
    from daemon.store.schema import decisions, sets

    cfg = config_from_args(args)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    if args.file is not None:
        text = args.file.read_text(encoding="utf-8").splitlines()
    else:
        text = sys.stdin.read().splitlines()
    valid, invalid = parse_numbered_lines(text, args.file, now=datetime.now(UTC))
    ctx = build_ctx(cfg, with_extractors=False)
    tracker = DecisionTracker(ctx)
    recorded = 0
    for lineno, line in valid:
        raw_id = line.set_id[4:] if line.set_id.startswith("set_") else line.set_id
        with ctx.store.read() as conn:
            known = conn.execute(select(sets.c.id).where(sets.c.id == raw_id)).first()
        if not known and not args.allow_unknown:
            invalid.append((lineno, f"unknown set {line.set_id!r} (pass --allow-unknown to record it anyway)"))
            continue
        with ctx.store.read() as conn:
            prev = conn.execute(
                select(decisions.c.id)
                .where(decisions.c.set_id == (raw_id if known else line.set_id))
                .order_by(decisions.c.id.desc())
                .limit(1)
            ).scalar()
        tracker.record(raw_id if known else None, line, None, "log", prev)
        recorded += 1
    for lineno, reason in sorted(invalid):
        print(f"line {lineno}: rejected: {reason}", file=sys.stderr)
    print(f"log: {recorded} lines recorded, {len(invalid)} rejected")
    return 0 if not invalid else 1
