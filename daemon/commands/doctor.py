"""`bestshot doctor`: check the environment and say how to fix what is wrong."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.cli import add_common, config_from_args

if TYPE_CHECKING:
    from core.config import Config


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("doctor", help="check folders, permissions, models, device; print fixes")
    add_common(p)
    p.set_defaults(handler=handle)


# bestshot runs fully without these; everything else needs them. The CLIP weights do not ship
# (`bestshot models fetch`): until then embeddings and the hand model are skipped, nothing else.
OPTIONAL_EXTRACTORS = ("clip", "hand_clip")


def checks(cfg: Config) -> list[tuple[bool, str, str]]:
    """(ok, what, fix) for each check; `what` starts with "extractor NAME" for extractors."""
    from core.extractors.device import pick_device
    from core.extractors.registry import build_extractors
    from daemon import service
    from daemon.files.areas import FOLDERS, area_problems
    from daemon.store.db import open_store

    out: list[tuple[bool, str, str]] = []
    root = cfg.root
    out.append((root.is_dir(), f"root {root} exists", f"mkdir -p '{root}' or run `bestshot scan --root '{root}'`"))
    for name in FOLDERS:
        p = cfg.path(name)
        ok = p.is_dir() and os.access(p, os.R_OK | os.W_OK | os.X_OK)
        out.append((ok, f"folder {name}: {p}", f"create it and make it writable: mkdir -p '{p}'"))
    outside = dict(area_problems(cfg))
    out.append(
        (
            not outside,
            "every folder resolves inside the root" + (": " + "; ".join(outside.values()) if outside else ""),
            "replace each symlink that leads out of the root with a real folder inside it",
        )
    )
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
    if cfg.paths.db_url is None and not (root / "bestshot.sqlite").is_file():
        # Opening it would create a library here; doctor only looks.
        out.append((False, f"no library at {root} (no bestshot.sqlite)", f"bestshot run --root '{root}'"))
    else:
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


def is_optional(what: str) -> bool:
    return any(what.startswith(f"extractor {name} ") for name in OPTIONAL_EXTRACTORS)


def handle(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    found = checks(cfg)
    required = [c for c in found if not is_optional(c[1])]
    optional = [c for c in found if is_optional(c[1])]
    bad = _show("required:", required, "!!")
    missing = _show("optional (bestshot runs without these; what they add is skipped):", optional, "--")
    if bad:
        print(f"{bad} required check(s) failed")
    else:
        print("all required checks pass" + (f"; {missing} optional missing" if missing else ""))
    return 0 if not bad else 1


def _show(title: str, found: list[tuple[bool, str, str]], mark: str) -> int:
    print(title)
    failed = 0
    for ok, what, fix in found:
        print(f"  [{'ok' if ok else mark}] {what}")
        if not ok:
            failed += 1
            if fix:
                print(f"       fix: {fix}")
    return failed
