"""Crop quality against human crop ratings (GAICD), through the daemon's real path.

Run: .venv/bin/python benchmarks/crop_quality.py [--data DIR] [--work DIR] [--fresh]

1. The scored photos are dropped into `<work>/root/inbox/` (one set folder per 3 images) and
   `bestshot scan --mode recommend` runs the real extractors, the anomaly report and the crop
   proposal, exactly as the daemon does. The first run takes about a minute; later runs reuse the
   root (scan only computes what is missing or outdated) and take seconds. `--fresh` starts over.
2. Each image's stored `crop` sidecar (labels/crops/<sha256>.crop.json, what proposal.json
   carries for a winner) is read back. The proposal is also recomputed from the stored sidecars
   with this checkout's crop extractor; a difference means the crop extractor's version was not
   bumped after a behaviour change, and is printed.
3. A box's human score: GAICD rates ~90 candidate crops per photo (mean opinion score, 1-5).
   An arbitrary box gets the score of the rated candidate with the highest IoU; that IoU is
   printed beside it. The percentile is the share of the photo's candidates rated below that
   score (ties count half). "proposed" is the stored best box whatever the verdict (a `review`
   verdict still draws it on the preview and the review page starts from it); needs_crop is
   true only for the verdict `crop`. Fallbacks are listed as stored. "headroom" is the best rated
   candidate whose aspect is within 3% of the photo's: what a perfect aesthetic cropper could
   reach (bestshot has no aesthetic model; its objective only grows with the window).

The photos are real (no anatomy errors): nothing needs removing, so the target is
proposed >= full frame on every photo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import load_config  # noqa: E402
from core.crop.from_sidecars import NEEDED  # noqa: E402
from core.extractors.analysis import CropExtractor  # noqa: E402
from core.imaging import load  # noqa: E402
from daemon.extractors.sidecar_store import stored_result  # noqa: E402
from daemon.store.db import open_store  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "crop_scored"
SET_SIZE = 3


def percentile(mos: np.ndarray, v: float) -> float:
    """Share of candidates rated below v (ties count half), in percent."""
    return float((mos < v).mean() + 0.5 * (mos == v).mean()) * 100


def human_score(boxes: np.ndarray, mos: np.ndarray, box: dict[str, int]) -> tuple[float, float, float]:
    """(MOS, percentile, IoU) of the rated candidate (x1, y1, x2, y2) with the highest IoU."""
    x, y, w, h = box["x"], box["y"], box["w"], box["h"]
    ix = np.clip(np.minimum(x + w, boxes[:, 2]) - np.maximum(x, boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(y + h, boxes[:, 3]) - np.maximum(y, boxes[:, 1]), 0, None)
    inter = ix * iy
    iou = inter / (w * h + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)
    k = int(np.argmax(iou))
    return float(mos[k]), percentile(mos, float(mos[k])), float(iou[k])


def build_root(paths: list[Path], root: Path) -> None:
    for k in range(0, len(paths), SET_SIZE):
        folder = root / "inbox" / f"gaicd_{k // SET_SIZE + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        for p in paths[k : k + SET_SIZE]:
            target = folder / p.name
            try:
                os.link(p, target)  # same bytes, no copy; the daemon never writes to images
            except OSError:
                shutil.copy2(p, target)


def scan(root: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k != "BESTSHOT_CONFIG"}
    t = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "scan", "--root", str(root), "--mode", "recommend"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"bestshot scan failed ({res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}")
    return time.perf_counter() - t


def read_back(root: Path) -> dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """name -> (sha256, stored crop sidecar, the crop recomputed now from the stored sidecars)."""
    cfg = load_config(root=root, env={})
    con = sqlite3.connect(root / "bestshot.sqlite")
    try:
        rows = con.execute("SELECT sha256, path FROM images").fetchall()
    finally:
        con.close()
    store = open_store(cfg.db_url)
    extractor = CropExtractor(cfg.crop)
    out: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None]] = {}
    try:
        with store.read() as conn:
            for sha, rel in rows:
                stored = json.loads((cfg.path("labels") / "crops" / f"{sha}.crop.json").read_text())
                deps = {n: stored_result(cfg, conn, sha, n) for n in ("anomalies", *NEEDED)}
                now = None
                if all(v is not None for v in deps.values()):
                    got = extractor.run([load(root / rel)], [{k: v for k, v in deps.items() if v is not None}])[0]
                    now = getattr(got, "payload", None)
                out[Path(rel).name] = (sha, stored, now)
    finally:
        store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bestshot-crop-quality"))
    ap.add_argument("--fresh", action="store_true", help="delete the cached root first")
    args = ap.parse_args()
    table_file = args.data / "gaicd_crop_scores.json"
    if not table_file.exists():
        print(f"{table_file} is absent: nothing to measure")
        return 1
    table = json.loads(table_file.read_text())
    root = args.work / "root"
    if args.fresh and root.exists():
        shutil.rmtree(root)
    paths = sorted(p for p in args.data.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not root.exists():
        build_root(paths, root)
    seconds = scan(root)
    got = read_back(root)
    print(f"bestshot scan over {len(paths)} photos in {root}: {seconds:.1f} s")
    print("human score of a box = MOS of the rated GAICD candidate with the highest IoU; pct = MOS percentile\n")
    print(
        f"{'image':11s} {'verdict':15s} {'targets':24s} {'proposed pct':>12s} {'IoU':>5s} "
        f"{'full frame pct':>14s} {'IoU':>5s} {'headroom':>8s}  fallbacks pct (IoU)"
    )
    proposed, full, headroom, fallback_rows, stale = [], [], [], [], []
    for p in paths:
        if p.name not in got:
            print(f"{p.name:11s} not registered by scan")
            continue
        _sha, crop, now = got[p.name]
        if now is not None and now != crop:
            stale.append(p.name)
        tags = ",".join(sorted({f"{t['kind'][:4]}:{t['tag']}" for t in crop["targets"]})) or "-"
        if p.name not in table:
            print(f"{p.name:11s} {crop['verdict']:15s} {tags[:24]:24s} (no human scores)")
            continue
        boxes = np.asarray(table[p.name]["crops"]["bbox"], dtype=np.float64)
        mos = np.asarray(table[p.name]["crops"]["score"], dtype=np.float64)
        w, h = crop["image_size"]
        frame = {"x": 0, "y": 0, "w": w, "h": h}
        shown = crop["best"]["box"]
        _, pp, pi = human_score(boxes, mos, shown)
        _, fp, fi = human_score(boxes, mos, frame)
        fbs = [human_score(boxes, mos, c["box"]) for c in crop["fallbacks"]]
        aspect = (boxes[:, 2] - boxes[:, 0]) / (boxes[:, 3] - boxes[:, 1]) / (w / h)
        same = mos[np.abs(aspect - 1) <= 0.03]
        headroom.append(percentile(mos, float(same.max())) if len(same) else float("nan"))
        proposed.append(pp)
        full.append(fp)
        fallback_rows += [f[1] for f in fbs]
        fb = "  ".join(f"{f[1]:3.0f}% ({f[2]:.2f})" for f in fbs) or "-"
        print(
            f"{p.name:11s} {crop['verdict']:15s} {tags[:24]:24s} {pp:>11.0f}% {pi:>5.2f} {fp:>13.0f}% {fi:>5.2f} {headroom[-1]:>7.0f}%  {fb}"
        )
    worse = sum(a < b for a, b in zip(proposed, full, strict=True))
    print(
        f"\nmean over {len(proposed)} scored photos: proposed {np.mean(proposed):.0f}th percentile, "
        f"full frame {np.mean(full):.0f}th; proposed below the full frame on {worse} of {len(proposed)} "
        f"(headroom: best same-aspect rated candidate {np.nanmean(headroom):.0f}th)"
    )
    if fallback_rows:
        print(f"fallbacks: {len(fallback_rows)} boxes, mean {np.mean(fallback_rows):.0f}th percentile")
    else:
        print("fallbacks: none offered")
    if stale:
        print(
            f"WARNING: the stored crop differs from this checkout's for {', '.join(stale)}: "
            "bump CropExtractor.version (core/extractors/analysis.py) or rerun with --fresh"
        )
    else:
        print("stored crops match this checkout's crop extractor on every photo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
