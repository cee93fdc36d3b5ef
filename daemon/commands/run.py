"""`bestshot run`: the daemon in the foreground (what launchd starts)."""

from __future__ import annotations

import argparse

from daemon import logsetup
from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("run", help="run the daemon in the foreground (logs to stderr and <root>/logs)")
    add_common(p)
    p.add_argument("--mode", choices=["auto", "watch", "recommend", "batch"], help="pin the mode")
    p.add_argument(
        "--service",
        action="store_true",
        help="started by launchd/systemd (`service install` adds it): log to <root>/logs/bestshot.log only",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, mode=args.mode)
    logsetup.divert_native_output(cfg, service=args.service)
    logsetup.configure(cfg, to_file=True, verbose=args.verbose, service=args.service)
    from daemon.app import build_ctx
    from daemon.extractors.idle_models import tune_malloc
    from daemon.runner import run_daemon

    tune_malloc()
    return run_daemon(build_ctx(cfg))
