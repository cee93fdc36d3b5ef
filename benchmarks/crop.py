"""Crop proposer figures: time per image given sidecars, and agreement with human crop scores (GAIC).

Run: .venv/bin/python benchmarks/crop.py [--repeats 30]

1. Sidecars (hands, pose, face, saliency) are computed once with the real extractors for the
   ../shared/data images; then `detect_anomalies` and `propose_crop` are timed on them alone.
2. GAIC: each scored photo has ~90 candidate crops with a human mean opinion score (MOS). GAIC
   candidates ignore the original aspect ratio, and with nothing to remove our proposer keeps the
   full frame, so a crop-vs-crop match says little. Instead:
   a) our objective is computed on every GAIC candidate (the same vectorised scorer the search
      uses, on their boxes) and rank-correlated with the MOS (Spearman), per image;
   b) the candidate our objective likes best: its MOS percentile among the candidates;
   c) our forced proposal (exact or near-exact aspect): the IoU-nearest candidate's MOS percentile.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.anomaly.detect import detect_anomalies  # noqa: E402
from core.anomaly.model import AnomalyReport  # noqa: E402
from core.config import load_config  # noqa: E402
from core.crop.context import build_context  # noqa: E402
from core.crop.from_sidecars import NEEDED, CropInputs, inputs_from_results  # noqa: E402
from core.crop.objective import evaluate  # noqa: E402
from core.crop.proposal import propose_crop  # noqa: E402
from core.extractors.registry import build_extractors, run_pass  # noqa: E402
from core.imaging import load  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
FOLDERS = ("ai_malformed_hands", "ai_portraits_hands/image", "ai_people_flux", "crop_scored", "real_people_wholebody")


def sidecars(paths: list[Path]) -> dict[Path, tuple[int, int, CropInputs]]:
    cfg = load_config(None, root=Path("/tmp/bestshot-bench-crop"), env={})
    ex = build_extractors(cfg.extractors.model_copy(update={"enabled": list(NEEDED)}), cfg.path("models"))
    out = {}
    try:
        for p in paths:
            img = load(p)
            out[p] = (img.width, img.height, inputs_from_results(run_pass(ex, [img], {})[img.sha256]))
    finally:
        for e in ex:
            e.close()
    return out


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this thread): on a shared 2-core machine the wall time
    includes waiting for other processes; the CPU time is what a proposal itself costs."""
    fn()  # warm caches (numpy dispatch, first allocation)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def bench_time(data: dict[Path, tuple[int, int, CropInputs]], repeats: int) -> None:
    cfg = load_config(None, env={})
    print(f"== time per image given sidecars (median of {repeats} runs; wall ms / CPU ms)")
    print(
        f"{'image':40s} {'size':>10s} {'verdict':>15s} {'targets':>7s} {'anomalies':>13s} "
        f"{'crop':>13s} {'crop forced':>13s}"
    )
    crop, forced = [], []
    for p, (w, h, inp) in data.items():

        def anomalies(w: int = w, h: int = h, inp: CropInputs = inp) -> object:
            return detect_anomalies(
                inp.hands, inp.poses, inp.faces, w, h, cfg.anomaly, subject=inp.subject, hand_world=inp.hand_world
            )

        report = detect_anomalies(
            inp.hands, inp.poses, inp.faces, w, h, cfg.anomaly, subject=inp.subject, hand_world=inp.hand_world
        )

        def proposal(
            force: bool, w: int = w, h: int = h, inp: CropInputs = inp, report: AnomalyReport = report
        ) -> object:
            return propose_crop(
                w, h, report, faces=inp.faces, poses=inp.poses, subject=inp.subject, settings=cfg.crop, force=force
            )

        prop = propose_crop(w, h, report, faces=inp.faces, poses=inp.poses, subject=inp.subject, settings=cfg.crop)
        t_an = timed(anomalies, repeats)
        t_cr = timed(functools.partial(proposal, False), repeats)
        t_fo = timed(functools.partial(proposal, True), repeats)
        if prop.verdict != "no_crop_needed":
            crop.append(t_cr)
        forced.append(t_fo)
        name = f"{p.parent.name}/{p.name}"[-40:]
        print(
            f"{name:40s} {w:>4d}x{h:<5d} {prop.verdict:>15s} {len(prop.targets):>7d} "
            f"{t_an[0]:>6.2f}/{t_an[1]:<6.2f} {t_cr[0]:>6.2f}/{t_cr[1]:<6.2f} {t_fo[0]:>6.2f}/{t_fo[1]:<6.2f}"
        )

    def summary(label: str, xs: list[tuple[float, float]]) -> None:
        wall, cpu = [x[0] for x in xs], [x[1] for x in xs]
        print(
            f"{label}: wall median {statistics.median(wall):.2f} ms (max {max(wall):.2f}); "
            f"CPU median {statistics.median(cpu):.2f} ms (max {max(cpu):.2f}) over {len(xs)} images"
        )

    summary("crop proposal, images with something to remove", crop)
    summary("crop proposal, full search forced on every image", forced)


def percentile(mos: np.ndarray, v: float) -> float:
    """Share of candidates scored below v (ties count half), in percent."""
    return float((mos < v).mean() + 0.5 * (mos == v).mean()) * 100


def bench_gaic(data: dict[Path, tuple[int, int, CropInputs]]) -> None:
    scores = json.loads((SHARED / "crop_scored" / "gaicd_crop_scores.json").read_text())
    cfg = load_config(None, env={})
    s = cfg.crop
    print("\n== GAIC human crop scores (candidates ignore aspect; see module docstring)")
    print(
        f"{'image':12s} {'n':>3s} {'spearman(obj,MOS)':>18s} {'(saliency)':>11s} {'(area only)':>12s} "
        f"{'our-pick MOS pct':>16s} {'our-crop IoU-nn MOS pct':>24s} {'IoU':>5s}"
    )
    rhos, area_rhos, pick_pcts, nn_pcts = [], [], [], []
    for name, entry in scores.items():
        p = SHARED / "crop_scored" / name
        w, h, inp = data[p]
        boxes = np.asarray(entry["crops"]["bbox"], dtype=np.int64)
        mos = np.asarray(entry["crops"]["score"], dtype=np.float64)
        ctx = build_context(w, h, None, inp.faces, inp.poses, inp.subject, s)
        sc = evaluate(ctx, boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1], s)
        rho = float(spearmanr(sc.objective, mos).statistic)
        rho_sal = float(spearmanr(sc.saliency, mos).statistic)
        rho_area = float(spearmanr(sc.area, mos).statistic)
        pick = int(np.argmax(sc.objective))
        prop = propose_crop(w, h, None, faces=inp.faces, poses=inp.poses, subject=inp.subject, settings=s, force=True)
        b = prop.best
        ix = np.clip(np.minimum(b.x + b.w, boxes[:, 2]) - np.maximum(b.x, boxes[:, 0]), 0, None)
        iy = np.clip(np.minimum(b.y + b.h, boxes[:, 3]) - np.maximum(b.y, boxes[:, 1]), 0, None)
        inter = ix * iy
        iou = inter / (b.w * b.h + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)
        nn = int(np.argmax(iou))
        rhos.append(rho)
        pick_pcts.append(percentile(mos, mos[pick]))
        nn_pcts.append(percentile(mos, mos[nn]))
        area_rhos.append(rho_area)
        print(
            f"{name:12s} {len(mos):>3d} {rho:>18.3f} {rho_sal:>11.3f} {rho_area:>12.3f} {pick_pcts[-1]:>15.0f}% "
            f"{nn_pcts[-1]:>23.0f}% {iou[nn]:>5.2f}"
        )
    print(
        f"mean spearman {np.mean(rhos):.3f} (crop area alone: {np.mean(area_rhos):.3f}); our-pick MOS percentile mean {np.mean(pick_pcts):.0f}%; "
        f"our-crop nearest-candidate MOS percentile mean {np.mean(nn_pcts):.0f}% (50% = chance)"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"{SHARED} is absent: nothing to measure")
        return 1
    paths = []
    for folder in FOLDERS:
        paths += sorted(q for q in (SHARED / folder).iterdir() if q.suffix.lower() in (".jpg", ".png"))
    t = time.perf_counter()
    data = sidecars(paths)
    print(f"sidecars for {len(paths)} images computed in {time.perf_counter() - t:.1f} s (not part of the timing)\n")
    bench_time(data, args.repeats)
    bench_gaic(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
