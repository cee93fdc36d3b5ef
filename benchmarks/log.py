"""Watch-and-log figures: crop-box recovery time for a 1024x1536 image.

    .venv/bin/python benchmarks/log.py [--repeats 7]

Prints, for a real generated portrait from ../shared/data (or a textured synthetic image when
that folder is absent) scaled to 1024x1536, the median and worst wall time and the box error of:
- recovering the box of an exact cut (no resize) from its known source;
- recovering the box of a cut exported at 50 %;
- the same 50 % crop matched against a set of four candidate sources (prefilter + recovery).
Three crop sizes are used (large, medium, face-sized) so the figures are not one lucky case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.labels.crop_recovery import CropMatch, match_crop, recover_crop
from core.labels.settings import LabelSettings
from tests.test_crop_recovery import H, W, synthetic, to_portrait  # the same sources the tests use

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ai_portraits_hands" / "image"
BOXES = [(100, 200, 640, 960), (37, 211, 854, 1281), (402, 130, 300, 450)]


def sources() -> tuple[list[np.ndarray], str]:
    files = sorted(SHARED.glob("*.png"))[:4] if SHARED.is_dir() else []
    if len(files) == 4:
        return [to_portrait(np.asarray(Image.open(f).convert("RGB"))) for f in files], f"photos from {SHARED}"
    return [synthetic(i) for i in range(4)], "synthetic textured images (../shared/data absent)"


def half(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((round(w / 2), round(h / 2)), Image.Resampling.BICUBIC))


def timed(fn: Callable[[], CropMatch | None], repeats: int) -> tuple[list[float], CropMatch | None]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def error(m: CropMatch | None, box: tuple[int, int, int, int]) -> float:
    if m is None:
        return float("inf")
    x, y, w, h = box
    b = m.box
    return max(abs(b.x - x), abs(b.y - y), abs(b.x2 - x - w), abs(b.y2 - y - h))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    settings = LabelSettings()
    srcs, what = sources()
    print(f"crop-box recovery on {W}x{H} sources: {what}; {args.repeats} repeats per case")
    print(f"{'case':<34}{'crop box':<24}{'median ms':>10}{'max ms':>9}{'error px':>10}  method")
    for box in BOXES:
        x, y, w, h = box
        cut = srcs[1][y : y + h, x : x + w]
        small = half(cut)
        cases: list[tuple[str, Callable[[], CropMatch | None]]] = [
            ("exact cut, known source", lambda c=cut: recover_crop(c, srcs[1], settings)),
            ("50 % export, known source", lambda c=small: recover_crop(c, srcs[1], settings)),
            ("50 % export, 1 of 4 candidates", lambda c=small: match_crop(c, srcs, settings)[1]),
        ]
        for label, fn in cases:
            times, m = timed(fn, args.repeats)
            method = m.method if m is not None else "none"
            print(
                f"{label:<34}{box!s:<24}{1000 * statistics.median(times):>10.0f}"
                f"{1000 * max(times):>9.0f}{error(m, box):>10.2f}  {method}"
            )


def move_to_line_latency(n: int) -> None:
    """Median time from a user's move (the last of a set) to its line in session.jsonl, live daemon."""
    import shutil
    import sys
    import tempfile
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.helpers import DaemonProc, filed_sets, textured, wait_for, write_config, write_png

    lat = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "root"
        write_config(root)
        for sub in ("approved", "rejected"):
            (root / "exports" / sub).mkdir(parents=True)
        sessions = root / "labels" / "sessions"

        def count() -> int:
            return sum(len(f.read_text().splitlines()) for f in sessions.glob("*.jsonl")) if sessions.is_dir() else 0

        with DaemonProc(root):
            for i in range(n):
                stage = Path(d) / f"s{i}"
                for j in range(2):
                    write_png(stage / f"s{i}_{j}.png", textured(i * 2 + j, w=512, h=768))
                shutil.move(str(stage), root / "inbox" / f"s{i}")
                want = [f"s{i}_0.png", f"s{i}_1.png"]
                wait_for(lambda want=want: want in filed_sets(root).values(), timeout=60)
                folder = root / "raw" / next(k for k, v in filed_sets(root).items() if f"s{i}_0.png" in v)
                shutil.move(str(folder / f"s{i}_1.png"), root / "exports" / "rejected" / f"s{i}_1.png")
                before = count()
                t0 = time.perf_counter()
                shutil.move(str(folder / f"s{i}_0.png"), root / "exports" / "approved" / f"s{i}_0.png")
                wait_for(lambda b=before: count() > b, timeout=30, interval=0.005)
                lat.append(time.perf_counter() - t0)
    print(
        f"move-to-line latency (last move of a set of 2 -> its line in session.jsonl), live daemon: "
        f"median {1000 * statistics.median(lat):.0f} ms, max {1000 * max(lat):.0f} ms, n={n} "
        "(watch.stable_seconds=0.3 does not apply to moves outside the inbox)"
    )


if __name__ == "__main__":
    main()
    move_to_line_latency(10)
