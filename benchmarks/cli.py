"""What the newcomer's commands cost: time and peak RSS of `bestshot --help`, `status` and `queue`.

    .venv/bin/python benchmarks/cli.py [--runs 5]

A library is seeded through the real pipeline (`bestshot scan` over 4 generated PNGs in a dropped
folder, pHash only), then its rows are copied under new sha256s, 4 images to a filed set with a
copy of the seed set's proposal, until it holds 1,000 and then 10,000 images. That copy is the only
shortcut; every figure is a fresh `python -m daemon.cli ...` process (posix_spawn, so no copy of
this process is counted), timed from spawn to exit: wall time (median), CPU time (user + sys,
median; steadier than wall time on a busy machine) and peak RSS (max) from wait4().
`python -c pass` is measured in the same run as the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure(args: list[str], runs: int) -> tuple[float, float, float]:
    """Median wall and CPU seconds and max peak RSS (MB) over `runs` fresh processes."""
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this tree's code, whatever the venv's editable path
    times, cpu, rss = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        pid = os.posix_spawn(
            args[0],
            args,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
        _pid, status, usage = os.wait4(pid, 0)
        times.append(time.perf_counter() - t0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{args} exited {os.waitstatus_to_exitcode(status)}")
        cpu.append(usage.ru_utime + usage.ru_stime)
        # ru_maxrss is KiB on Linux, bytes on macOS.
        rss.append(usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024))
    return statistics.median(times), statistics.median(cpu), max(rss)


def seed(root: Path) -> None:
    from tests.helpers import textured, write_config, write_png

    write_config(root, {"extractors": {"enabled": ["phash"]}})
    for i in range(4):
        write_png(root / "inbox" / "seed" / f"img_{i}.png", textured(i, w=256, h=384))
    subprocess.run(
        [sys.executable, "-m", "daemon.cli", "scan", "--root", str(root)], cwd=REPO, check=True, capture_output=True
    )


def grow(db_file: Path, target: int) -> None:
    db = sqlite3.connect(db_file)
    (seed_set,) = db.execute("SELECT id FROM sets ORDER BY created_at LIMIT 1").fetchone()
    members = [
        r[0] for r in db.execute("SELECT sha256 FROM set_members WHERE set_id = ? ORDER BY position", (seed_set,))
    ]
    prop = db.execute("SELECT * FROM proposals WHERE set_id = ? ORDER BY id DESC LIMIT 1", (seed_set,)).fetchone()
    pcols = [d[1] for d in db.execute("PRAGMA table_info(proposals)")]
    have = db.execute("SELECT count(*) FROM images").fetchone()[0]
    while have < target:
        sid = secrets.token_hex(5)
        db.execute(
            "INSERT INTO sets SELECT ?, created_at + ?, source, reason, size, ?, status, NULL FROM sets WHERE id = ?",
            (sid, have, f"raw/set_{sid}", seed_set),
        )
        mapping = {}
        for pos, sha in enumerate(members):
            new = secrets.token_hex(32)
            mapping[sha] = new
            db.execute(
                "INSERT INTO images SELECT ?, ?, original_name, size_bytes, width, height, format, mtime + ?,"
                " ?, first_seen, last_seen, state FROM images WHERE sha256 = ?",
                (new, f"raw/set_{sid}/img_{pos}.png", have, secrets.token_hex(8), sha),
            )
            db.execute(
                "INSERT INTO sidecars SELECT ?, extractor, version, payload, blob, files, created_at"
                " FROM sidecars WHERE sha256 = ?",
                (new, sha),
            )
            db.execute(
                "INSERT INTO jobs (sha256, kind, version, state, attempts, created_at, updated_at)"
                " SELECT ?, kind, version, state, attempts, created_at, updated_at FROM jobs WHERE sha256 = ?",
                (new, sha),
            )
            db.execute("INSERT INTO set_members VALUES (?, ?, ?, NULL)", (sid, new, pos))
            have += 1
        if prop is not None:
            row = dict(zip(pcols, prop, strict=True))
            body = json.loads(row["body"])
            body["set_id"] = f"set_{sid}"
            for im in body.get("images", []):
                im["image_id"] = mapping.get(im["image_id"], im["image_id"])
            body["winner_id"] = mapping.get(body.get("winner_id"), body.get("winner_id"))
            row.update(id=None, set_id=sid, winner=mapping.get(row["winner"], row["winner"]), body=json.dumps(body))
            db.execute(
                f"INSERT INTO proposals ({', '.join(pcols)}) VALUES ({', '.join('?' * len(pcols))})",
                [row[c] for c in pcols],
            )
    db.commit()
    db.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="processes per figure (median time, max RSS)")
    args = ap.parse_args()
    cli = [sys.executable, "-m", "daemon.cli"]
    floor = measure([sys.executable, "-c", "pass"], args.runs)

    def show(what: str, got: tuple[float, float, float]) -> None:
        t, c, rss = got
        print(
            f"{what:<34} wall {t * 1000:6.0f} ms ({t / floor[0]:4.1f}x floor)  cpu {c * 1000:6.0f} ms "
            f"({c / max(floor[1], 1e-3):4.1f}x floor)  peak RSS {rss:5.0f} MB ({rss / floor[2]:4.1f}x floor)"
        )

    show("floor: python -c pass", floor)
    show("bestshot --help", measure([*cli, "--help"], args.runs))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lib"
        seed(root)
        for size in (1_000, 10_000):
            grow(root / "bestshot.sqlite", size)
            for what in ("status", "queue"):
                show(f"{size:>6} images: bestshot {what}", measure([*cli, what, "--root", str(root)], args.runs))


if __name__ == "__main__":
    main()
