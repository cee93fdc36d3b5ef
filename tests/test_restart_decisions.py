"""Moves made while the daemon was down are dated by the files, not by when a walk found them
(issue 14, defect 6)."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DaemonProc, filed_sets, textured, wait_for, write_config, write_png

pytestmark = pytest.mark.slow


def lines(root: Path) -> list[dict[str, Any]]:
    return [
        json.loads(x)
        for f in sorted((root / "labels" / "sessions").glob("*__session.jsonl"))
        for x in f.read_text().splitlines()
    ]


def test_a_restart_never_closes_the_set_the_user_touched_last_as_moved_on(tmp_path: Path) -> None:
    """Defect 6: moves made while the daemon was down were stamped at discovery time in folder-walk
    order, so a1 (whose winner the user moved last) closed as `moved_on` with three left behind."""
    root = tmp_path / "root"
    write_config(root)
    with DaemonProc(root):
        for k, name in enumerate(("a1", "b1", "c1")):
            for i in range(4 if name == "a1" else 3):
                write_png(tmp_path / "stage" / name / f"{name}_{i}.png", textured(10 * k + i))
            shutil.move(str(tmp_path / "stage" / name), root / "inbox" / name)
        wait_for(lambda: len(filed_sets(root)) == 3, timeout=60, what="3 sets filed")
    folder = {v[0].split("_")[0]: root / "raw" / k for k, v in filed_sets(root).items()}
    approved = root / "exports" / "approved"
    for name in ("b1", "c1"):
        for f in sorted(folder[name].glob("*.png")):
            shutil.move(str(f), approved / f.name)
        # A person takes seconds between sets; file times tick coarsely (a few ms), so keep them apart.
        t = time.time()
        wait_for(lambda t=t: time.time() > t + 0.05, what="a moment between sets")
    shutil.move(str(folder["a1"] / "a1_0.png"), approved / "a1_0.png")  # last: only a1's winner
    with DaemonProc(root):
        wait_for(
            lambda: {x["set_id"] for x in lines(root)} >= {"set_" + p.name[4:] for p in (folder["b1"], folder["c1"])},
            timeout=60,
            what="b1 and c1 decided",
        )
    by_set = {x["set_id"]: x for x in lines(root)}
    assert f"set_{folder['a1'].name[4:]}" not in by_set, by_set  # a1 is still the user's to finish
    b, c = by_set[f"set_{folder['b1'].name[4:]}"], by_set[f"set_{folder['c1'].name[4:]}"]
    assert datetime.fromisoformat(b["ts"]) < datetime.fromisoformat(c["ts"])  # in the order the user moved them
