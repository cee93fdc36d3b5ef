"""Kill -9 the real daemon again and again during ingest and during decisions; count what was lost.

    .venv/bin/python scripts/kill9_counts.py --images 400 --ingest-kills 40 --decision-kills 20

Ingest: every image is dropped into the inbox (folders of 4, plus loose files), then the daemon is
started and killed with SIGKILL over and over: half the kills the moment the journal shows a
planned move (a move in flight), the rest at a random moment. A kill "landed mid-move" when the
journal had a planned row right after it, "mid-set" when a set was committed but not yet all
filed. A last clean run finishes; then every dropped image must
be in raw/ exactly once, byte for byte (no file missing, duplicated or truncated), with no planned
journal row and nothing left in the inbox.

Decisions: for one filed set at a time the user's moves are made (winner to approved/, the rest to
rejected/) while the daemon runs, and it is killed at a random moment within the next 1.5 s. A
kill landed "mid-decision" when the set had no logged line yet (before the decision row, or
between the row and its line). After a last clean run each decided set must have exactly one
valid line, and no line may be torn or repeated.

Prints the counts; exits 1 if anything was lost, duplicated or truncated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import textured, write_config, write_png  # noqa: E402


def rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    db = root / "bestshot.sqlite"
    if not db.exists():
        return []
    for _ in range(50):
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                return con.execute(sql).fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError:
            time.sleep(0.02)  # the schema is still being created by a starting daemon
    return []


def start(root: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run", "--root", str(root)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env,
    )


def wait_running(log: Path, offset: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if b"daemon running" in log.read_bytes()[offset:] or proc.poll() is not None:
            return
        time.sleep(0.02)
    raise SystemExit("daemon did not start")


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def ingest(root: Path, images: int, kills: int, rng: random.Random) -> dict[str, Any]:
    inbox = root / "inbox"
    expected: dict[str, str] = {}
    for i in range(images):
        if i % 5 == 4:  # one in five loose, grouped by prompt
            p = write_png(inbox / f"loose_{i}.png", textured(i, w=64, h=96), {"parameters": f"prompt {i // 20}"})
        else:
            p = write_png(inbox / f"drop_{i // 4}" / f"img_{i}.png", textured(i, w=64, h=96))
        expected[sha(p)] = p.name
    log = root.parent / "ingest.log"
    landed, mid_set, planned_seen, done = 0, 0, 0, 0
    while done < kills:
        offset = log.stat().st_size if log.exists() else 0
        proc = start(root, log)
        wait_running(log, offset, proc)
        on_move = done % 2 == 0
        deadline = time.monotonic() + (30 if on_move else rng.uniform(0.0, 3.0))
        while time.monotonic() < deadline and proc.poll() is None:
            if on_move and rows(root, "select 1 from journal where state = 'planned' limit 1"):
                break
            if not any(inbox.rglob("*.png")) and not rows(root, "select 1 from sets where status='filing' limit 1"):
                break  # nothing left to interrupt
            time.sleep(0.001 if on_move else 0.01)
        kill9(proc)
        done += 1
        planned = rows(root, "select count(*) from journal where state = 'planned'")
        n = planned[0][0] if planned else 0
        landed += n > 0
        planned_seen += n
        mid_set += bool(rows(root, "select 1 from sets where status = 'filing' limit 1"))
        if not any(inbox.rglob("*.png")) and not rows(root, "select 1 from sets where status='filing' limit 1"):
            break
    # A last clean run finishes whatever is left, then stops normally.
    offset = log.stat().st_size if log.exists() else 0
    proc = start(root, log)
    wait_running(log, offset, proc)
    end = time.monotonic() + 300
    while time.monotonic() < end:
        if not any(inbox.rglob("*.png")) and not rows(root, "select 1 from sets where status='filing' limit 1"):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    found: dict[str, list[Path]] = {}
    for p in (root / "raw").rglob("*.png"):
        found.setdefault(sha(p), []).append(p)
    missing = [name for h, name in expected.items() if h not in found]
    duplicated = [str(ps) for h, ps in found.items() if h in expected and len(ps) > 1]
    unknown = [str(ps) for h, ps in found.items() if h not in expected]  # truncated or altered bytes
    return {
        "images": images,
        "kills": done,
        "kills_mid_move": landed,
        "kills_mid_set": mid_set,
        "planned_moves_found_after_kills": planned_seen,
        "sets_filed": len(list((root / "raw").iterdir())),
        "missing": len(missing),
        "duplicated": len(duplicated),
        "truncated_or_altered": len(unknown),
        "left_in_inbox": len(list(inbox.rglob("*.png"))),
        "planned_journal_rows_left": rows(root, "select count(*) from journal where state = 'planned'")[0][0],
    }


def session_lines(root: Path) -> tuple[list[dict[str, Any]], int]:
    valid, torn = [], 0
    for f in sorted((root / "labels" / "sessions").glob("*__session.jsonl")):
        for line in f.read_text().splitlines():
            try:
                valid.append(json.loads(line))
            except ValueError:
                torn += 1
    return valid, torn


def decisions(root: Path, kills: int, rng: random.Random) -> dict[str, Any]:
    approved, rejected = root / "exports" / "approved", root / "exports" / "rejected"
    folders = sorted(d for d in (root / "raw").iterdir() if d.is_dir() and len(list(d.glob("*.png"))) >= 2)
    log = root.parent / "decide.log"
    mid, decided = 0, []
    for folder in folders[:kills]:
        offset = log.stat().st_size if log.exists() else 0
        proc = start(root, log)
        wait_running(log, offset, proc)
        files = sorted(folder.glob("*.png"))
        shutil.move(str(files[0]), approved / files[0].name)
        for f in files[1:]:
            shutil.move(str(f), rejected / f.name)
        decided.append("set_" + folder.name[4:])
        time.sleep(rng.uniform(0.0, 1.5))  # the kill lands at a random moment of the daemon's handling
        kill9(proc)
        logged = rows(root, f"select 1 from decisions where set_id = '{folder.name[4:]}' and logged = 1")
        mid += not logged
    offset = log.stat().st_size if log.exists() else 0
    proc = start(root, log)
    wait_running(log, offset, proc)
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if {x["set_id"] for x in session_lines(root)[0]} >= set(decided):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    valid, torn = session_lines(root)
    per_set: dict[str, int] = {}
    for x in valid:
        per_set[x["set_id"]] = per_set.get(x["set_id"], 0) + 1
    return {
        "kills": len(decided),
        "kills_mid_decision": mid,
        "decisions_lost": sum(1 for s in decided if s not in per_set),
        "lines_duplicated": sum(n - 1 for s, n in per_set.items() if s in decided and n > 1),
        "lines_torn": torn,
        "unlogged_rows_left": rows(root, "select count(*) from decisions where logged = 0")[0][0],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--ingest-kills", type=int, default=40)
    ap.add_argument("--decision-kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--keep", action="store_true", help="keep the temp root")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bestshot-kill9-"))
    root = tmp / "root"
    write_config(root)
    try:
        ing = ingest(root, args.images, args.ingest_kills, rng)
        print("ingest   ", json.dumps(ing))
        dec = decisions(root, args.decision_kills, rng)
        print("decisions", json.dumps(dec))
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    bad = ing["missing"] + ing["duplicated"] + ing["truncated_or_altered"] + ing["left_in_inbox"]
    bad += ing["planned_journal_rows_left"]
    bad += dec["decisions_lost"] + dec["lines_duplicated"] + dec["lines_torn"] + dec["unlogged_rows_left"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
