"""`bestshot` entry point: the only place that configures logging and turns errors into exit codes.

Command modules import their heavy dependencies (torch, mediapipe, scipy...) inside their
handlers, never at module level: `bestshot --help` and `bestshot status` must answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import BestshotError

if TYPE_CHECKING:
    from core.config import Config

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
    from core.config import load_config

    cfg_file = args.config
    if cfg_file is None and args.root is not None and (args.root / "bestshot.yaml").is_file():
        cfg_file = args.root / "bestshot.yaml"
    if cfg_file is None and args.root is None and Path("data/bestshot.yaml").is_file():
        cfg_file = Path("data/bestshot.yaml")
    return load_config(cfg_file, root=args.root, overrides={k: v for k, v in overrides.items() if v is not None})


def require_library(cfg: Config) -> None:
    """Commands that read a library refuse a folder that is not one, instead of creating one there."""
    if cfg.paths.db_url is not None or (cfg.root / "bestshot.sqlite").is_file():
        return
    raise BestshotError(
        None,
        f"{cfg.root} is not a bestshot library (no bestshot.sqlite in it); nothing was created. "
        f"Start one with `bestshot run --root '{cfg.root}'` and drop images into '{cfg.root / 'inbox'}', "
        "or pass --root with your library's folder.",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bestshot",
        description="Offline daemon that learns to pick, crop and reject AI-generated images of people.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print the installed version and exit")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(subs)
    return parser


class _VersionAction(argparse.Action):
    """Like argparse's "version" action, but reads the version only when asked (importlib.metadata
    costs every other command tens of milliseconds)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        print(f"bestshot {_version()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bestshot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    # MediaPipe's C++ side logs through glog/absl; keep its INFO chatter out of the user's terminal.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Offline means offline: ONNX Runtime's telemetry client (DNS + HTTPS to Microsoft) stays off.
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except BestshotError as e:
        fix = getattr(e, "fix", "")
        print(f"bestshot: {e}" + (f" (fix: {fix})" if fix else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bestshot status | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
