"""`bestshot` entry point: the only place that configures logging and turns errors into exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import Config, load_config
from core.errors import BestshotError

log = logging.getLogger("bestshot")

# Each module exposes register(subparsers); listed here so `bestshot --help` shows them in this order.
COMMANDS = (
    "daemon.commands.run",
    "daemon.commands.scan",
    "daemon.commands.status",
    "daemon.commands.service",
    "daemon.commands.doctor",
    "daemon.commands.sidecars",
    "daemon.commands.models",
    "daemon.commands.export",
    "daemon.commands.log",
    "daemon.commands.rank",
    "daemon.commands.crop",
    "daemon.commands.review",
)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, help="the watched root (default: config `root`, i.e. ./data)")
    p.add_argument("--config", type=Path, help="YAML config file (default: $BESTSHOT_CONFIG or <root>/bestshot.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def config_from_args(args: argparse.Namespace, **overrides: object) -> Config:
    cfg_file = args.config
    if cfg_file is None and args.root is not None and (args.root / "bestshot.yaml").is_file():
        cfg_file = args.root / "bestshot.yaml"
    if cfg_file is None and args.root is None and Path("data/bestshot.yaml").is_file():
        cfg_file = Path("data/bestshot.yaml")
    return load_config(cfg_file, root=args.root, overrides={k: v for k, v in overrides.items() if v is not None})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bestshot",
        description="Offline daemon that learns to pick, crop and reject AI-generated images of people.",
    )
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(subs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # MediaPipe's C++ side logs through glog/absl; keep its INFO chatter out of the user's terminal.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except BestshotError as e:
        print(f"bestshot: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bestshot status | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
