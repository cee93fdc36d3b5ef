"""daemon/ mirrors core/: a newcomer who knows core/<x> finds its I/O half in daemon/<x>."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The modules that wire the stages together, and the I/O half of a top-level core module.
WIRING = {"__init__", "app", "cli", "context", "instance", "logsetup", "pipeline", "runner", "service"}
TOP_LEVEL_PAIRS = {"dedup"}
# Packages with no pure half (I/O only) or whose pure half is a top-level core module.
IO_ONLY = {"commands", "files", "store", "watch", "ingest"}


def _modules(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py")}


def _packages(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}


def test_daemon_top_level_holds_only_wiring_and_pairs() -> None:
    stray = _modules(REPO / "daemon") - WIRING - TOP_LEVEL_PAIRS
    assert not stray, f"daemon/ top-level modules outside a subpackage: {sorted(stray)}"


def test_top_level_pairs_have_their_core_half() -> None:
    for name in TOP_LEVEL_PAIRS:
        assert (REPO / "core" / f"{name}.py").is_file(), name


def test_every_daemon_subpackage_mirrors_a_core_package_or_is_io_only() -> None:
    core_packages = _packages(REPO / "core")
    unpaired = _packages(REPO / "daemon") - core_packages - IO_ONLY
    assert not unpaired, f"daemon/ subpackages without a core/ package of the same name: {sorted(unpaired)}"


# The pairs the issue found mismatched (daemon/hand_learning beside core/anomaly/hand_model, ...).
PAIRS = [
    "anomaly/calibration",
    "anomaly/hand_model",
    "labels/crop_recovery",
    "labels/decide",
    "labels/session",
    "labels/tags",
    "rank/train",
]


def test_paired_modules_keep_core_names() -> None:
    for rel in PAIRS:
        assert (REPO / "daemon" / f"{rel}.py").is_file() and (REPO / "core" / f"{rel}.py").is_file(), rel


IMPORT_EVERY_CORE_MODULE = """
import importlib, pkgutil, sys
import core
for m in pkgutil.walk_packages(core.__path__, "core."):
    importlib.import_module(m.name)
print(sorted(n for n in sys.modules if n.split(".")[0] in ("daemon", "watchdog", "apscheduler")))
"""


def test_core_imports_no_daemon_watchdog_or_apscheduler_even_indirectly() -> None:
    """ruff's banned-api rule (pyproject.toml, TID251) sees import statements in core/, lazy ones
    too; this sees what importing every core module really loads (importlib, a third party)."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_CORE_MODULE], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
