"""A newcomer's first ten minutes: help, version, fast status, no accidental libraries, names
that survive, empty states that say so, a quiet terminal, files that follow the umask."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli import build_parser
from tests.helpers import REPO, DaemonProc, bestshot, status, textured, wait_for, write_config, write_png

HEAVY = ("torch", "mediapipe", "cv2", "onnxruntime", "open_clip", "scipy", "matplotlib", "core.extractors.registry")


def _imported(*args: str, cwd: Path = REPO) -> set[str]:
    """Modules the CLI imports for these arguments (`python -X importtime`)."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "daemon.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return {m.group(1).strip() for m in re.finditer(r"^import time:.*\|\s*(\S+)\s*$", res.stderr, re.MULTILINE)}


def _library(root: Path, extra: dict[str, object] | None = None) -> Path:
    write_config(root, extra)
    bestshot("scan", root=root)
    return root


def test_every_subcommand_and_option_has_help() -> None:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helped = {a.dest for a in subs._choices_actions if a.help}
    missing = [name for name in subs.choices if name not in helped]
    for name, p in subs.choices.items():
        for a in p._actions:
            if a.help is None and not isinstance(a, argparse._HelpAction):
                missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
    assert missing == []


def test_version() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--version"], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert res.returncode == 0 and re.fullmatch(r"bestshot \S+\n", res.stdout)


def test_help_imports_no_database_or_model_code() -> None:
    mods = _imported("--help")
    assert "daemon.cli" in mods
    assert not mods & {"sqlalchemy", "pydantic", "numpy", *HEAVY}


def test_status_imports_no_model_code_and_shows_the_daemon(tmp_path: Path) -> None:
    root = _library(tmp_path / "lib")
    assert not _imported("status", "--root", str(root)) & set(HEAVY)
    st = status(root)
    assert st["daemon"] == {"running": False}
    assert "phash" in st["extractors"] and st["extractors_checked_at"] is not None  # recorded by `scan`
    assert "not running on this root" in bestshot("status", root=root).stdout


@pytest.mark.parametrize("command", ["status", "queue", "metrics", "undo"])
def test_a_folder_that_is_not_a_library_is_left_alone(tmp_path: Path, command: str) -> None:
    nothing = tmp_path / "not-a-library"
    res = bestshot(command, root=nothing, check=False)
    assert res.returncode != 0
    assert "is not a bestshot library" in res.stderr and f"bestshot run --root '{nothing}'" in res.stderr
    assert not nothing.exists()
    # Without --root the default is ./data: it must not appear in the current folder either.
    res = subprocess.run(
        [sys.executable, "-m", "daemon.cli", command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=120,
        check=False,
    )
    assert res.returncode != 0 and "is not a bestshot library" in res.stderr
    assert not (tmp_path / "data").exists()


def test_empty_library_states_say_so(tmp_path: Path) -> None:
    root = _library(tmp_path / "lib")
    res = bestshot("metrics", root=root)
    assert "no decided sets yet" in res.stdout
    assert not (root / "labels" / "metrics.png").exists()
    assert json.loads(bestshot("metrics", "--json", root=root).stdout)["chart"] is None
    assert "no batches to undo" in bestshot("undo", root=root).stdout


def test_doctor_passes_when_only_optional_things_are_missing(tmp_path: Path) -> None:
    from core.extractors.settings import ExtractorSettings

    # Every default extractor, so the CLIP ones (their weights do not ship) are checked too.
    root = _library(tmp_path / "lib", {"extractors": {"enabled": ExtractorSettings().enabled}})
    res = bestshot("doctor", root=root, check=False)
    assert res.returncode == 0, res.stdout
    out = res.stdout
    assert out.index("required:") < out.index("optional") and "clip" in out[out.index("optional") :]
    assert "bestshot models fetch" in out


def test_models_fetch_without_a_network_fails_in_one_line(tmp_path: Path) -> None:
    root = _library(tmp_path / "lib")
    res = bestshot("models", "fetch", root=root, check=False, timeout=60)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "network" in lines[0], res.stderr


def test_scan_keeps_native_noise_out_of_the_terminal_and_files_follow_the_umask(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    write_config(root, {"extractors": {"enabled": ["phash", "hands"]}})
    write_png(root / "inbox" / "a.png", textured(1, 192, 256))
    res = subprocess.run(
        ["sh", "-c", f"umask 022 && exec '{sys.executable}' -m daemon.cli scan --root '{root}'"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    # MediaPipe/TensorFlow Lite write straight to fd 2; that goes to logs/native.log, not the terminal.
    for noise in ("XNNPACK", "W0000", "absl::InitializeLog"):
        assert noise not in res.stderr
    assert "XNNPACK" in (root / "logs" / "native.log").read_text()
    written = list((root / "sidecar" / "hands").glob("*.json"))
    assert written
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_run_names_what_the_user_dropped(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    write_config(root, {"extractors": {"enabled": ["phash", "hands"]}, "grouping": {"quiet_seconds": 0.5}})
    with DaemonProc(root) as d:
        assert f"drop images into {root / 'inbox'}" in d.output()
        st = status(root)["daemon"]
        assert st["running"] is True and st["pid"] == d.proc.pid and st["command"] == "run"  # type: ignore[union-attr]
        assert "running: pid" in bestshot("status", root=root).stdout

        staging = tmp_path / "staging" / "my batch"
        for i in range(2):
            write_png(staging / f"img_{i}.png", textured(200 + i))
        shutil.move(str(staging), root / "inbox" / "my batch")
        wait_for(lambda: (root / "raw" / "set_my_batch").is_dir(), timeout=40, what="folder filed by name")
        wait_for(lambda: "filed your folder 'my batch' as raw/set_my_batch/" in d.output(), timeout=10, what="log")
        wait_for(lambda: "sidecars: 2 of 2 images done" in d.output(), timeout=60, what="progress line")
        st_all = status(root)
        assert {"set_id": "set_my_batch", "dropped_folder": "my batch"}.items() <= st_all["recent_sets"][0].items()
        wait_for(lambda: bestshot("queue", "--json", root=root).stdout.strip() != "[]", timeout=60, what="queue")
        assert any(it["set_id"] == "set_my_batch" for it in json.loads(bestshot("queue", "--json", root=root).stdout))

        # A single loose image is a single; dropping it again says where it already is.
        write_png(root / "inbox" / "lonely.png", textured(300))
        wait_for(lambda: "filed single image lonely.png" in d.output(), timeout=40, what="single filed")
        single = next((root / "raw").glob("*/lonely.png"))
        shutil.copy(single, root / "inbox" / "lonely again.png")
        wait_for(lambda: "lonely again.png: already in the library as" in d.output(), timeout=40, what="dup")
        assert f"already in the library as {single.relative_to(root)}" in d.output()
        wait_for(lambda: "single image lonely.png" in bestshot("queue", root=root).stdout, timeout=60, what="q")

        # Deciding the set logs it in one line.
        (root / "exports" / "approved").mkdir(parents=True, exist_ok=True)
        shutil.move(str(root / "raw" / "set_my_batch" / "img_1.png"), root / "exports" / "approved" / "img_1.png")
        shutil.move(str(root / "raw" / "set_my_batch" / "img_0.png"), root / "exports" / "rejected" / "img_0.png")
        wait_for(lambda: "decided set_my_batch: winner img_1.png of 2" in d.output(), timeout=60, what="decided")
    assert status(root)["daemon"] == {"running": False}
