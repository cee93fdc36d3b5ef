"""Ingest figures: scan throughput against its floor, drop-to-filed latency in the running
daemon, idle CPU.

The floor is a loop that reads, hashes and fully decodes the same files, run just before the
scan (both with the files in the page cache): what scan cannot avoid doing once per image.

    .venv/bin/python benchmarks/ingest.py [--images 1000] [--sets 10] [--idle 30]

Extractors are limited to pHash (what grouping needs) so the figures measure the ingest path
itself; benchmarks/sidecars.py measures the extractors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.imaging import decode, read_bytes, sha256_bytes
from tests.helpers import DaemonProc, bestshot, filed_sets, textured, wait_for, write_config, write_png


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    out = subprocess.run(["ps", "-o", "cputime=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    parts = [float(x) for x in out.replace("-", ":").split(":")]
    return sum(v * 60**i for i, v in enumerate(reversed(parts)))


def bench_scan(tmp: Path, n: int) -> None:
    root = tmp / "scan"
    write_config(root)
    inbox = root / "inbox"
    for i in range(n):
        write_png(inbox / f"img_{i:05}.png", textured(i, w=512, h=768))
        (inbox / f"img_{i:05}.yaml").write_text(f"prompt: subject {i // 4}\nseed: {i}\n")
    files = sorted(inbox.glob("*.png"))
    t0 = time.perf_counter()
    for f in files:
        data = read_bytes(f)
        decode(f, data, sha256=sha256_bytes(data))
    floor = time.perf_counter() - t0
    empty = tmp / "empty"
    write_config(empty)
    t0 = time.perf_counter()
    bestshot("scan", root=empty, timeout=600)
    start_up = time.perf_counter() - t0  # the process, imports, database: paid once per scan
    t0 = time.perf_counter()
    res = bestshot("scan", root=root, timeout=3600)
    dt = time.perf_counter() - t0
    print(f"scan: {n} PNGs (512x768) in {dt:.1f} s = {n / dt:.1f} images/s  [{res.stdout.strip()}]")
    print(
        f"floor (read + sha256 + full decode of the same files, one loop): {floor:.1f} s = {n / floor:.1f} images/s;"
        f" scan / floor = {dt / floor:.2f}x (target <= 1.3x); without the start-up of an empty scan"
        f" ({start_up:.1f} s): {(dt - start_up) / floor:.2f}x"
    )


def bench_latency_and_idle(tmp: Path, sets: int, idle: float) -> None:
    root = tmp / "live"
    write_config(root)
    staging = tmp / "staging"
    lat = []
    with DaemonProc(root) as d:
        for s in range(sets):
            folder = staging / f"set{s}"
            for i in range(4):
                write_png(folder / f"s{s}_{i}.png", textured(10_000 + s * 4 + i, w=512, h=768))
                (folder / f"s{s}_{i}.yaml").write_text(f"prompt: latency set {s}\n")
            names = sorted(p.name for p in folder.glob("*.png"))
            t0 = time.perf_counter()
            for p in sorted(folder.iterdir()):  # loose files, moved in as a group
                shutil.move(str(p), root / "inbox" / p.name)
            wait_for(
                lambda names=names: names in filed_sets(root).values(), timeout=60, interval=0.01, what="set filed"
            )
            lat.append(time.perf_counter() - t0)
        time.sleep(3)
        assert d.proc is not None
        c0, t0 = cpu_seconds(d.proc.pid), time.perf_counter()
        time.sleep(idle)
        c1, t1 = cpu_seconds(d.proc.pid), time.perf_counter()
    print(
        f"drop-to-filed latency, set of 4 loose PNGs: median {statistics.median(lat) * 1000:.0f} ms "
        f"(min {min(lat) * 1000:.0f}, max {max(lat) * 1000:.0f}, n={len(lat)}; stable_seconds=0.3)"
    )
    print(f"idle CPU over {idle:.0f} s: {100 * (c1 - c0) / (t1 - t0):.2f} % of one core")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--sets", type=int, default=10)
    ap.add_argument("--idle", type=float, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_scan(Path(d), args.images)
        bench_latency_and_idle(Path(d), args.sets, args.idle)


if __name__ == "__main__":
    main()
