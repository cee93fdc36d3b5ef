"""`bestshot service install|uninstall|status`: the LaunchAgent (macOS) or systemd user unit (Linux)."""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("service", help="install, uninstall or inspect the background service")
    p.add_argument(
        "action",
        choices=["install", "uninstall", "status", "print"],
        help="install (write and load it), uninstall, status (state, pid, last exit, logs), "
        "print (show the file install would write)",
    )
    add_common(p)
    p.add_argument("--no-load", action="store_true", help="write the file but do not load it")
    p.add_argument("--home", type=Path, default=None, help=argparse.SUPPRESS)  # tests
    p.add_argument("--platform", default=None, help=argparse.SUPPRESS)  # tests
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import sys

    from daemon import service

    home = args.home or Path.home()
    platform = args.platform or sys.platform
    if args.action in ("install", "print"):
        cfg = config_from_args(args)
        spec = service.default_spec(cfg.root, args.config, home)
        if args.action == "print":
            print(service.launchd_plist_bytes(spec).decode() if platform == "darwin" else service.systemd_unit(spec))
            return 0
        try:
            lines = service.install(spec, load=not args.no_load, platform=platform)
        except service.ServiceError as e:
            for line in e.steps:
                print(line)
            raise
    elif args.action == "uninstall":
        lines = service.uninstall(home, load=not args.no_load, platform=platform)
    else:
        lines = service.service_status(home, platform)
    for line in lines:
        print(line)
    return 0
