"""Ingest figures: scan throughput against its floor, drop-to-filed latency in the running
daemon, idle CPU.

The floor is a loop that reads, hashes and fully decodes the same files, run just before the
scan (both with the files in the page cache): what scan cannot avoid doing once per image.

    .venv/bin/python benchmarks/ingest.py [--images 1000] [--sets 10] [--idle 30] [--scan-only]

Extractors are limited to pHash (what grouping needs) so the figures measure the ingest path
itself; benchmarks/sidecars.py measures the extractors.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _floor(files: list[Path]) -> tuple[float, float]:
    """(wall s, CPU s) of the loop scan cannot beat: read, sha256 and fully decode each file."""
    t0, c0 = time.perf_counter(), time.process_time()
    for f in files:
        data = read_bytes(f)
        decode(f, data, sha256=sha256_bytes(data))
    return time.perf_counter() - t0, time.process_time() - c0


def _timed_scan(root: Path) -> tuple[float, float, str]:
    """(wall s, CPU s of the scan process, its summary line)."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    res = bestshot("scan", root=root, timeout=3600)
    dt, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    return dt, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), res.stdout.strip()


def bench_scan(tmp: Path, n: int) -> None:
    root = tmp / "scan"
    write_config(root)
    inbox = root / "inbox"
    for i in range(n):
        write_png(inbox / f"img_{i:05}.png", textured(i, w=512, h=768))
        (inbox / f"img_{i:05}.yaml").write_text(f"prompt: subject {i // 4}\nseed: {i}\n")
    files = sorted(inbox.glob("*.png"))
    floor_before = _floor(files)
    empty = tmp / "empty"
    write_config(empty)
    up_wall, up_cpu, _ = _timed_scan(empty)  # the process, imports, database: paid once per scan
    dt, cpu, summary = _timed_scan(root)
    floor_after = _floor(sorted((root / "raw").rglob("*.png")))  # scan filed them there
    # The faster of the two floors (one before, one after the scan), so a busy machine during one
    # of them cannot flatter the ratio.
    floor, floor_cpu = min(floor_before[0], floor_after[0]), min(floor_before[1], floor_after[1])
    print(f"scan: {n} PNGs (512x768) in {dt:.1f} s = {n / dt:.1f} images/s  [{summary}]")
    print(
        f"floor (read + sha256 + full decode of the same files, one loop; faster of one run before and one after"
        f" the scan): {floor:.1f} s = {n / floor:.1f} images/s"
    )
    print(
        f"scan / floor, wall: {dt / floor:.2f}x (target <= 1.3x); without the start-up of an empty scan"
        f" ({up_wall:.1f} s): {(dt - up_wall) / floor:.2f}x"
    )
    print(
        f"scan / floor, CPU seconds ({cpu:.1f} / {floor_cpu:.1f}; what a busy machine disturbs least):"
        f" {cpu / floor_cpu:.2f}x; without the start-up ({up_cpu:.1f} s): {(cpu - up_cpu) / floor_cpu:.2f}x"
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
    ap.add_argument("--scan-only", action="store_true", help="only scan against its floor")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bench_scan(Path(d), args.images)
        if not args.scan_only:
            bench_latency_and_idle(Path(d), args.sets, args.idle)


if __name__ == "__main__":
    main()
