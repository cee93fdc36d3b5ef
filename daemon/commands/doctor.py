"""`bestshot doctor`: check the environment and say how to fix what is wrong."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import service
from daemon.cli import add_common, config_from_args

if TYPE_CHECKING:
    from core.config import Config


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("doctor", help="check folders, permissions, models, device; print fixes")
    add_common(p)
    p.set_defaults(handler=handle)


def checks(cfg: Config) -> list[tuple[bool, str, str]]:
    """(ok, what, fix) for each check."""
    from core.extractors.device import pick_device
    from core.extractors.registry import build_extractors
    from daemon.app import FOLDERS
    from daemon.store.db import open_store

    out: list[tuple[bool, str, str]] = []
    root = cfg.root
    out.append((root.is_dir(), f"root {root} exists", f"mkdir -p '{root}' or run `bestshot scan --root '{root}'`"))
    for name in FOLDERS:
        p = cfg.path(name)
        ok = p.is_dir() and os.access(p, os.R_OK | os.W_OK | os.X_OK)
        out.append((ok, f"folder {name}: {p}", f"create it and make it writable: mkdir -p '{p}'"))
    inbox, raw = cfg.path("inbox"), cfg.path("raw")
    if inbox.exists() and raw.exists():
        same = inbox.stat().st_dev == raw.stat().st_dev
        out.append(
            (
                same,
                "inbox and raw/ are on one volume (moves are atomic renames)",
                "keep every folder under one root on one disk",
            )
        )
    try:
        store = open_store(cfg.db_url)
        out.append((True, f"database {cfg.db_url} opens, migrations {store.applied_migrations()}", ""))
        store.close()
    except Exception as e:  # report any driver failure as a finding, not a crash
        out.append((False, f"database {cfg.db_url}: {e}", "check the path/URL and permissions"))
    for ext in build_extractors(cfg.extractors, cfg.path("models"), cfg.anomaly, cfg.crop):
        a = ext.availability()
        out.append(
            (a.available, f"extractor {ext.name} v{ext.version}" + ("" if a.available else f": {a.reason}"), a.fix)
        )
    try:
        out.append((True, f"torch device: {pick_device(cfg.extractors.device)}", ""))
    except Exception as e:
        out.append((False, f"torch device: {e}", "install torch from requirements.lock"))
    free = shutil.disk_usage(root if root.exists() else Path.cwd()).free
    out.append(
        (free > 2 * 1024**3, f"free disk space {free / 1024**3:.1f} GiB", "free some space (sidecars need room)")
    )
    if sys.platform == "darwin":
        warn = service.fda_warning(root, Path.home())
        out.append(
            (
                warn is None,
                "the root, the code and the venv are readable by a launchd job (not in ~/Documents, ~/Desktop, "
                "~/Downloads, iCloud Drive or /Volumes)",
                warn or "",
            )
        )
    elif sys.platform.startswith("linux"):
        limit = Path("/proc/sys/fs/inotify/max_user_watches")
        if limit.exists():
            n = int(limit.read_text().strip())
            out.append((n >= 8192, f"inotify max_user_watches = {n}", "sudo sysctl fs.inotify.max_user_watches=524288"))
    return out


def handle(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    bad = 0
    for ok, what, fix in checks(cfg):
        print(f"[{'ok' if ok else '!!'}] {what}")
        if not ok:
            bad += 1
            if fix:
                print(f"     fix: {fix}")
    print("all good" if not bad else f"{bad} problem(s) found")
    return 0 if not bad else 1
