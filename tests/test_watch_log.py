"""Watch and log: real moves in a temp root, observed by the real daemon, become session lines."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import DaemonProc, db_rows, filed_sets, session_lines, textured, wait_for, write_config, write_png

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def drop_set(root: Path, tmp: Path, name: str, n: int = 3, seed: int = 0, size: tuple[int, int] = (256, 384)) -> Path:
    staging = tmp / "staging" / name
    for i in range(n):
        write_png(staging / f"{name}_{i}.png", textured(seed + i, w=size[0], h=size[1]))
    shutil.move(str(staging), root / "inbox" / name)
    want = sorted(f"{name}_{i}.png" for i in range(n))
    wait_for(lambda: want in filed_sets(root).values(), timeout=30, what=f"{name} filed")
    folder = next(k for k, v in filed_sets(root).items() if f"{name}_0.png" in v)
    return root / "raw" / folder


def test_winner_approved_losers_rejected_and_trash(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    trash = tmp_path / "Trash"
    trash.mkdir()
    with DaemonProc(root, "-v") as d:
        folder = drop_set(root, tmp_path, "s", n=3)
        (root / "exports" / "approved").mkdir(parents=True, exist_ok=True)
        (root / "exports" / "rejected").mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / "s_1.png"), root / "exports" / "approved" / "s_1.png")
        shutil.move(str(folder / "s_0.png"), root / "exports" / "rejected" / "s_0.png")
        shutil.move(str(folder / "s_2.png"), trash / "s_2.png")  # out of the tree: seen as a delete
        wait_for(lambda: session_lines(root), timeout=20, what="a session line")
        wait_for(lambda: d.idle_after(": winner "), timeout=30, what="every event after the decision handled")
        lines = session_lines(root)
    assert len(lines) == 1
    line = lines[0]
    assert line["set_id"] == folder.name and line["winner"] == "s_1.png"
    assert sorted(line["images"]) == ["s_0.png", "s_1.png", "s_2.png"]  # type: ignore[arg-type]
    assert line["delete"] is False  # the plan's boolean: a winner was kept
    assert sorted(line["bestshot"]["deleted"]) == ["s_0.png", "s_2.png"]  # type: ignore[index]
    assert line["needs_crop"] is False and line["crop_box"] is None
    rows = db_rows(root, "select winner, source, logged from decisions")
    assert len(rows) == 1 and rows[0][1] == "observed" and rows[0][2] == 1
    assert len(db_rows(root, "select * from pairs")) == 2


def _crop_and_check(tmp_path: Path, scale: float) -> None:
    root = tmp_path / "root"
    write_config(root)
    with DaemonProc(root):
        folder = drop_set(root, tmp_path, "c", n=2, seed=40, size=(512, 768))
        to_crop = root / "exports" / "to_crop"
        to_crop.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / "c_0.png"), to_crop / "c_0.png")
        (root / "exports" / "rejected").mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / "c_1.png"), root / "exports" / "rejected" / "c_1.png")
        wait_for(lambda: session_lines(root), timeout=20, what="first line")
        src = np.asarray(Image.open(to_crop / "c_0.png"))
        x, y, w, h = 64, 96, 320, 480  # same 2:3 aspect as the source
        cut = Image.fromarray(src[y : y + h, x : x + w])
        if scale != 1.0:
            cut = cut.resize((round(w * scale), round(h * scale)), Image.LANCZOS)
        cropped = root / "exports" / "cropped"
        cropped.mkdir(parents=True, exist_ok=True)
        tmp_file = tmp_path / "c_0_crop.png"
        cut.save(tmp_file)
        shutil.move(str(tmp_file), cropped / "c_0_crop.png")
        wait_for(lambda: any(ln["crop_box"] for ln in session_lines(root)), timeout=30, what="line with crop")
        lines = session_lines(root)
    final = lines[-1]
    assert final["winner"] == "c_0.png" and final["needs_crop"] is True
    box = final["crop_box"]
    assert isinstance(box, dict)
    for k, v in {"x": x, "y": y, "w": w, "h": h}.items():
        assert abs(box[k] - v) <= 2, (k, box)
    assert len(lines) == 2 and lines[1]["bestshot"]["revision"] == 1  # type: ignore[index]


def test_to_crop_then_exact_crop(tmp_path: Path) -> None:
    _crop_and_check(tmp_path, 1.0)


def test_to_crop_then_crop_rescaled_by_half(tmp_path: Path) -> None:
    _crop_and_check(tmp_path, 0.5)


def test_finder_tags_and_tag_subfolders(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    with DaemonProc(root):
        folder = drop_set(root, tmp_path, "t", n=2, seed=70)
        # A Finder tag in the real binary-plist format (under Linux's user. namespace) on the reject.
        os.setxattr(
            folder / "t_0.png",
            "user.com.apple.metadata:_kMDItemUserTags",
            plistlib.dumps(["long_hand", "Red\n6"], fmt=plistlib.FMT_BINARY),
        )
        sub = root / "exports" / "rejected" / "extra_fingers"
        sub.mkdir(parents=True)
        (root / "exports" / "approved").mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / "t_0.png"), sub / "t_0.png")
        shutil.move(str(folder / "t_1.png"), root / "exports" / "approved" / "t_1.png")
        wait_for(lambda: session_lines(root), timeout=20, what="line")
        line = session_lines(root)[-1]
        # A tag added in Finder after the move is picked up too (an attribute-only change).
        os.setxattr(
            root / "exports" / "approved" / "t_1.png",
            "user.com.apple.metadata:_kMDItemUserTags",
            plistlib.dumps(["warped_wrist"], fmt=plistlib.FMT_BINARY),
        )
        wait_for(lambda: "warped_wrist" in session_lines(root)[-1]["anomaly_tags"], timeout=20, what="late tag")
    assert {"extra_fingers", "long_hand", "Red"} <= set(line["anomaly_tags"])  # type: ignore[arg-type]


def test_correction_supersedes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    with DaemonProc(root, "-v") as d:
        folder = drop_set(root, tmp_path, "k", n=2, seed=90)
        approved, rejected = root / "exports" / "approved", root / "exports" / "rejected"
        approved.mkdir(parents=True, exist_ok=True)
        rejected.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / "k_0.png"), approved / "k_0.png")
        shutil.move(str(folder / "k_1.png"), rejected / "k_1.png")
        wait_for(lambda: len(session_lines(root)) == 1, timeout=20, what="first decision")
        # The user changes their mind: swap winner and reject.
        shutil.move(str(approved / "k_0.png"), rejected / "k_0.png")
        shutil.move(str(rejected / "k_1.png"), approved / "k_1.png")
        wait_for(lambda: session_lines(root)[-1]["winner"] == "k_1.png", timeout=20, what="correction")
        wait_for(lambda: d.idle_after(": winner "), timeout=30, what="every event after the correction handled")
        lines = session_lines(root)
    assert lines[0]["winner"] == "k_0.png"  # history is never rewritten
    assert lines[-1]["bestshot"]["supersedes"] is not None  # type: ignore[index]
    assert lines[-1]["bestshot"]["deleted"] == ["k_0.png"]  # type: ignore[index]


def test_kill9_between_move_and_line_writes_exactly_one_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    d = DaemonProc(root).start()
    folder = drop_set(root, tmp_path, "z", n=2, seed=120)
    d.kill9()
    # The user's moves happen while the daemon is dead (its events are lost).
    approved, rejected = root / "exports" / "approved", root / "exports" / "rejected"
    approved.mkdir(parents=True, exist_ok=True)
    rejected.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder / "z_0.png"), approved / "z_0.png")
    shutil.move(str(folder / "z_1.png"), rejected / "z_1.png")
    with DaemonProc(root):
        wait_for(lambda: session_lines(root), timeout=30, what="line after restart")
    # A crash after the line was appended but before it was marked logged: no duplicate.
    con = sqlite3.connect(root / "bestshot.sqlite")
    con.execute("update decisions set logged = 0")
    con.commit()
    con.close()
    with DaemonProc(root, "-v") as d:
        # Recovery and the start-up reconcile done: the worker has nothing left to do.
        wait_for(d.idle_after, timeout=60, what="the restarted daemon to reconcile")
    lines = session_lines(root)
    assert len(lines) == 1 and lines[0]["winner"] == "z_0.png"
    assert db_rows(root, "select logged from decisions") == [(1,)]


def test_log_command_records_valid_lines_and_rejects_invalid(tmp_path: Path) -> None:
    from tests.helpers import bestshot

    root = tmp_path / "root"
    write_config(root)
    good = {
        "ts": "2026-11-20T10:00:00+01:00",
        "set_id": "set_web1",
        "images": ["a.png", "b.png"],
        "winner": "a.png",
        "needs_crop": True,
        "delete": False,
        "crop_box": {"x": 0, "y": 0, "w": 100, "h": 150},
        "anomaly_tags": ["extra_fingers"],
    }
    bad_winner = dict(good, winner="zzz.png")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([json.dumps(good), "{not json", json.dumps(bad_winner), json.dumps(dict(good, ts="x"))]))
    res = bestshot("log", str(src), "--allow-unknown", root=root, check=False)  # set_web1 is another tool's
    assert res.returncode == 1
    assert "line 2: rejected" in res.stderr and "line 3: rejected" in res.stderr and "line 4: rejected" in res.stderr
    lines = session_lines(root)
    assert len(lines) == 1 and lines[0]["winner"] == "a.png" and lines[0]["crop_box"] == good["crop_box"]
    assert db_rows(root, "select source, set_id from decisions") == [("log", "set_web1")]


# The user's plan, verbatim in its keys and values' kinds:
# {"ts": "...", "set_id": "...", "images": [...], "winner": "...", "needs_crop": false, "delete": false,
#  "crop_box": null, "anomaly_tags": []}
PLAN_EXAMPLE = (
    '{"ts": "2026-11-24T10:00:01+00:00", "set_id": "set_000123", "images": ["img_1.png", "img_2.png"], '
    '"winner": "img_2.png", "needs_crop": false, "delete": false, "crop_box": null, "anomaly_tags": []}'
)


def test_log_records_the_plans_example_line_verbatim(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "root"
    write_config(root)
    res = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "log", "--allow-unknown", "--root", str(root)],  # another tool's set
        input=PLAN_EXAMPLE + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "1 lines recorded, 0 rejected" in res.stdout
    (line,) = session_lines(root)
    plan = json.loads(PLAN_EXAMPLE)
    assert list(line) == list(plan)  # written back in the plan's own schema, nothing added
    assert {k: v for k, v in line.items() if k != "ts"} == {k: v for k, v in plan.items() if k != "ts"}
    assert datetime.fromisoformat(str(line["ts"])) == datetime.fromisoformat(plan["ts"])  # ms precision added
    assert db_rows(root, "select set_id, source, deleted from decisions") == [("set_000123", "log", "[]")]


def test_an_earlier_bestshot_line_is_not_rewritten_after_an_upgrade(tmp_path: Path) -> None:
    """A decision recorded by an earlier bestshot (delete as a list, no crop_box) still reads as the
    same decision: a restart, which re-evaluates every decided set, writes no new line."""
    root = tmp_path / "root"
    write_config(root)
    with DaemonProc(root):
        folder = drop_set(root, tmp_path, "u", n=2, seed=150)
        approved, rejected = root / "exports" / "approved", root / "exports" / "rejected"
        approved.mkdir(parents=True, exist_ok=True)
        rejected.mkdir(parents=True, exist_ok=True)
        shutil.move(str(folder / "u_0.png"), approved / "u_0.png")
        shutil.move(str(folder / "u_1.png"), rejected / "u_1.png")
        wait_for(lambda: session_lines(root), timeout=20, what="line")
    (new,) = session_lines(root)
    old = {k: v for k, v in new.items() if k != "crop_box"}
    old["delete"] = new["bestshot"]["deleted"]  # type: ignore[index]
    old["bestshot"] = {k: v for k, v in new["bestshot"].items() if k != "deleted"}  # type: ignore[attr-defined]
    old["bestshot"]["v"] = 1
    con = sqlite3.connect(root / "bestshot.sqlite")
    con.execute("update decisions set line = ?", (json.dumps(old, separators=(",", ":")),))
    con.commit()
    con.close()
    from tests.helpers import bestshot

    bestshot("scan", root=root)  # start-up recovery re-evaluates every decided set, then decides
    assert len(session_lines(root)) == 1
