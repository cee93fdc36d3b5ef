"""Hand evidence that could rank images within a set, measured on the anatomy dev set (issue 10).

    .venv/bin/python benchmarks/hand_cues.py [--data DIR] [--work DIR] [--only NAME ...] [--fast] [--auc-all]

A perfect reading of hand severity alone would pick the least severe image in 21 of the 30 sets of
4 (benchmarks/limb_cues.py prints the bound per part), so hand evidence that ranks images *within*
a set is the lever for the prior. This script reads the sidecars of a `benchmarks/judgement.py`
work dir (hands with world landmarks, pose, face, the anomaly report rebuilt by this tree's cues)
and measures, with `benchmarks/limb_cues.py`'s machinery, candidate hand cues whose direction is
fixed before measuring (higher = more likely wrong):

- each hand's plausibility readings (`core.anomaly.parts` / `core.anomaly.plausibility`: detector
  score, strongest geometry cue on it, hyperextension, world proportions, finger crossings, world
  proximal-phalanx collapse, image/world palm flip, finger ratio, palm over forearm and over face,
  handedness against its pose arm), each aggregated per image as the max, mean and sum over hands;
- the hands parts model's linear predictor: as shipped (fitted on every prompt, so it saw the
  held-out prompt: leaky, printed for reference) and refitted without the held-out prompt(s) on the
  shipped model's features;
- the worst hand (largest sum of its readings standardised over all hands), the number and share
  of implausible hands (any reading past its upper quartile over all hands: no labels used);
- exposure and coverage: hands detected, visible pose wrists, the larger of the two, hands expected
  from the wrists minus hands detected, wrists without a hand; hand geometry cue count; hands whose
  image and world landmarks disagree.

For each: Spearman with hand and with total severity within a generator x prompt group (mean over
the 15 groups; in how many of the 5 prompts its mean with hand severity is positive), sets of 4 and
2 won when the cue alone picks the image (lowest wins), leave-one-prompt-out top-1 of the prior
with the cue as one more candidate, and the nested leave-one-prompt-out hands AUC of the parts fit
(scripts/fit_judgement.py) with it as one more candidate. Bar (fixed before measuring): prior top-1
on sets of 4 up by >= 3 sets, sets of 2 not lower, hands AUC not down by more than 0.02. The hands
AUC is computed only for cues that pass the prior part of the bar unless --auc-all (the nested
hands fit takes about two minutes per cue on one core).

To read another tree's sidecars (e.g. a hands extractor at a newer version), run this script from
that tree, so that `bestshot scan` finds every extractor's current version cached and only reads.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anatomy_data import Dataset, Scanned, load_dataset, run_script, scan
from limb_cues import Bench, cue_parser

from core.anomaly.detect import hand_contexts
from core.anomaly.hands import palm_scale, points_3d
from core.anomaly.parts import (
    _WORLD_MEASUREMENTS,
    PALM_OVER_FACE,
    PALM_OVER_FOREARM,
    _finger_ratio,
    shipped_parts_model,
)
from core.anomaly.parts_fit import fit_part, fit_with_selection, linear_score
from core.anomaly.plausibility import finger_crossings, hyperextension_deg, proportion_deviation
from core.anomaly.settings import AnomalySettings
from core.anomaly.world import palm_normal_angle_deg, proximal_over_palm
from core.crop.from_sidecars import anomaly_report, inputs_from_results
from core.extractors.base import SidecarResult
from core.rank.features import base_features
from core.sidecar_types import POSE

VISIBLE = 0.5
# Per-hand readings, higher = less plausible.
READINGS = (
    "low_score",
    "cue",
    "hyperext",
    "proportions",
    "crossings",
    "collapse",
    "palm_flip",
    "finger_ratio",
    "over_forearm",
    "over_face",
    "mismatch",
)


def _cue_score(a: Any) -> float:
    return float(a.evidence.get("cue_score", a.score))


def image_hands(sc: Scanned, image_id: str) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Per detected hand its readings; per image the counts (wrists, hands, cues, disagreements)."""
    pay = sc.payloads[image_id]
    results: dict[str, Any] = {n: SidecarResult(pay[n]) for n in ("hands", "pose", "face") if n in pay}
    npy = sc.root / "sidecar" / "saliency" / f"{sc.sha[image_id]}.npy"
    results["saliency"] = SidecarResult(pay["saliency"], {"subject": np.load(npy, allow_pickle=False)})
    w, h = (int(v) for v in pay["anomalies"]["image_size"])
    inputs = inputs_from_results(results)
    s = AnomalySettings()
    report = anomaly_report(inputs, w, h, s)
    hands, world = inputs.hands, inputs.hand_world or [None] * len(inputs.hands)
    contexts = hand_contexts(hands, inputs.poses, inputs.faces, w, h, s)
    cues: dict[int, float] = {}
    n_cues = 0
    for a in [*report.anomalies, *report.suppressed]:
        if a.source.startswith("hand:"):
            n_cues += 1
            k = int(a.source.split(":")[1])
            cues[k] = max(cues.get(k, 0.0), _cue_score(a))
    per: list[dict[str, float]] = []
    for k, (hand, ctx, wl) in enumerate(zip(hands, contexts, world, strict=True)):
        palm = palm_scale(points_3d(hand, w))
        r = {n: 0.0 for n in READINGS}
        r["low_score"] = 1.0 - hand.score
        r["cue"] = cues.get(k, 0.0)
        r["finger_ratio"] = _finger_ratio(hand)
        r["mismatch"] = float(ctx.side is not None and hand.handedness.lower() != ctx.side)
        if palm > 1.0 and ctx.pose_elbow is not None and ctx.pose_wrist is not None:
            fore = float(np.linalg.norm(ctx.pose_elbow - ctx.pose_wrist))
            if fore > 0.5 * palm:
                r["over_forearm"] = abs(math.log(palm / fore / PALM_OVER_FOREARM))
        if palm > 1.0 and ctx.face_width:
            r["over_face"] = abs(math.log(palm / ctx.face_width / PALM_OVER_FACE))
        if wl is not None:
            r["hyperext"] = hyperextension_deg(wl, hand.handedness) / 90.0
            r["proportions"] = proportion_deviation(wl)
            r["crossings"] = float(finger_crossings(wl))
            pr = proximal_over_palm(wl)
            r["collapse"] = 0.4 - pr if pr is not None else 0.0
            ang = palm_normal_angle_deg(points_3d(hand, w), wl)
            r["palm_flip"] = ang / 180.0 if ang is not None else 0.0
        per.append(r)
    wrists = 0
    for pose in inputs.poses:
        p = np.asarray(pose.landmarks, dtype=np.float64)
        for side in ("left", "right"):
            x, y, _, v = p[POSE[f"{side}_wrist"]]
            wrists += bool(v >= VISIBLE and 0 <= x < w and 0 <= y < h)
    disagree = {
        a.source
        for a in report.uncertain_regions
        if a.evidence.get("measurement") in _WORLD_MEASUREMENTS
        or any(e.get("measurement") in _WORLD_MEASUREMENTS for e in a.evidence.get("also", []))
    }
    counts = {"wrists": float(wrists), "hands": float(len(hands)), "cues": float(n_cues), "disagree": len(disagree)}
    return per, counts


def all_cues(sc: Scanned, ids: Sequence[str]) -> dict[str, dict[str, float]]:
    got = {i: image_hands(sc, i) for i in ids}
    every = np.array([[r[n] for n in READINGS] for per, _ in got.values() for r in per])
    mu, sd = every.mean(0), np.where(every.std(0) > 1e-12, every.std(0), 1.0)
    q3 = np.percentile(every, 75, axis=0)
    out: dict[str, dict[str, float]] = {}
    for i, (per, c) in got.items():
        x = np.array([[r[n] for n in READINGS] for r in per]).reshape(len(per), len(READINGS))
        cue: dict[str, float] = {}
        for j, n in enumerate(READINGS):
            col = x[:, j]
            cue[f"{n}_max"] = float(col.max()) if col.size else 0.0
            cue[f"{n}_mean"] = float(col.mean()) if col.size else 0.0
            cue[f"{n}_sum"] = float(col.sum())
        zsum = ((x - mu) / sd).sum(1) if len(per) else np.zeros(0)
        implausible = (x > q3).any(1) if len(per) else np.zeros(0, dtype=bool)
        cue["worst_hand_z"] = float(zsum.max()) if zsum.size else 0.0
        cue["implausible_hands"] = float(implausible.sum())
        cue["implausible_share"] = float(implausible.mean()) if implausible.size else 0.0
        cue["hands_detected"] = c["hands"]
        cue["wrists_visible"] = c["wrists"]
        cue["hands_exposed"] = max(c["hands"], c["wrists"])
        cue["expected_minus_found"] = c["wrists"] - c["hands"]
        cue["wrists_without_hands"] = max(0.0, c["wrists"] - c["hands"])
        cue["hand_cue_count"] = c["cues"]
        cue["world_disagree"] = c["disagree"]
        out[i] = cue
    return out


class HandBench(Bench):
    def __init__(self, ds: Dataset, sc: Scanned) -> None:
        super().__init__(ds, sc)
        self.hand = {i: ds.items[i].label.severity["hands"] for i in self.ids}

    def _features(self) -> dict[str, dict[str, float]]:
        from scripts.fit_judgement import image_features

        if self._parts_features is None:
            self._parts_features = {i: image_features(self.sc, i) for i in self.ids}
        return self._parts_features

    def hands_auc(self, extra: Mapping[str, float] | None) -> float:
        """Nested leave-one-prompt-out hands AUC of the parts fit, the cue one more candidate."""
        from scripts.fit_judgement import CANDIDATES, L2_GRID

        pf = self._features()
        names = [*CANDIDATES["hands"], *(["cue"] if extra is not None else [])]
        x = np.array([[extra[i] if n == "cue" and extra is not None else pf[i][n] for n in names] for i in self.ids])
        y = np.array([self.ds.items[i].label.has_error["hands"] for i in self.ids], dtype=bool)
        return float(fit_with_selection(x, y, list(self.prompt), names, L2_GRID).nested_auc)

    def hands_lp(self) -> tuple[dict[str, float], Callable[[str], dict[str, float]]]:
        """The hands parts model's constant-free linear predictor on the shipped model's features:
        as shipped (fitted on every prompt), and per held-out prompt p a cue whose training prompts
        q are scored by a model fitted without p and q, p by one fitted without p."""
        m = shipped_parts_model().parts["hands"]
        pf = self._features()
        x = np.array([[pf[i][f] for f in m.features] for i in self.ids])
        y = np.array([self.ds.items[i].label.has_error["hands"] for i in self.ids], dtype=bool)
        shipped = dict(zip(self.ids, linear_score(m, x), strict=True))

        def refit(without: set[str]) -> np.ndarray:
            keep = ~np.isin(self.prompt, list(without))
            return linear_score(fit_part(x[keep], y[keep], list(m.features), 1.0), x)

        def nested(p: str) -> dict[str, float]:
            v = np.zeros(len(self.ids))
            for q in self.ds.prompts:
                v[self.prompt == q] = refit({p, q})[self.prompt == q]
            return dict(zip(self.ids, v, strict=True))

        return shipped, nested


def hand_bounds(b: HandBench) -> None:
    """What a hand reading correlated rho with the within-group ranks of hand severity would win."""
    rng = np.random.default_rng(0)
    print("\n== hand severity as the only evidence (the cue alone picks the image)")
    f = dict(b.hand)
    print(f"  true hand severity: sets of 4 {b.alone(f, 4):.1f}/30, sets of 2 {b.alone(f, 2):.1f}/60, "
          f"within-group rho with total {b.within(f, b.total):+.3f}")  # fmt: skip
    for rho in (0.3, 0.5, 0.7):
        wins = {4: [], 2: []}
        for _ in range(200):
            g_f = b.reading(b.hand, rho, rng)
            for size in (4, 2):
                wins[size].append(b.alone(g_f, size))
        print(f"  hand reading correlated {rho} with hand-severity ranks within a group: sets of 4 "
              f"{np.mean(wins[4]):.1f}/30, sets of 2 {np.mean(wins[2]):.1f}/60")  # fmt: skip


def exposure_bound(b: HandBench, per_image: Mapping[str, Mapping[str, float]]) -> None:
    """How far counting the hands on show could go. The labels give the number of hands people
    could see (N of k/N) only where they marked a hand error, so the figures use those images, and
    "fewest hands wins" counts the others as showing none: an upper bound that leaks the labels."""
    true_n = {i: float(n) for i in b.ids if (n := b.ds.items[i].label.visible["hands"]) is not None}
    print(f"\n== hands on show (labels' N, known on {len(true_n)} of {len(b.ids)} images)")
    hand_n = {i: b.hand[i] for i in true_n}
    print(f"  true N: within-group rho with hand severity {b.within(true_n, hand_n):+.3f}, with total "
          f"{b.within(true_n, b.total):+.3f}; fewest wins (leaky) sets of 4 "
          f"{b.alone({i: true_n.get(i, 0.0) for i in b.ids}, 4):.1f}/30, sets of 2 "
          f"{b.alone({i: true_n.get(i, 0.0) for i in b.ids}, 2):.1f}/60")  # fmt: skip
    for name in ("hands_detected", "wrists_visible", "hands_exposed"):
        est = {i: per_image[i][name] for i in b.ids}
        print(f"  {name:16s} within-group rho with true N {b.within(est, true_n):+.3f}")
    feats = {i: base_features(b.sc.signals[i]) for i in b.ids}
    for name in ("people", "face_size"):
        est = {i: float(v) for i in b.ids if (v := feats[i].get(name)) is not None}
        print(f"  {name:16s} within-group rho with true N {b.within(est, true_n):+.3f}")


def main() -> int:
    ap = cue_parser(__doc__)
    ap.add_argument("--auc-all", action="store_true", help="the hands AUC for every cue, not only prior passers")
    args = ap.parse_args()
    ds = load_dataset(args.data, min_prompts=2)
    sc = scan(ds, args.work)
    b = HandBench(ds, sc)
    per_image = all_cues(sc, b.ids)
    cues: dict[str, Mapping[str, float] | Callable[[str], Mapping[str, float]]] = {
        n: {i: per_image[i][n] for i in b.ids} for n in per_image[b.ids[0]]
    }
    shipped, nested = b.hands_lp()
    cues["hands_lp_shipped*"] = shipped
    cues["hands_lp_refit"] = nested
    if args.only:
        cues = {n: f for n, f in cues.items() if n in args.only}
    n_hands = int(sum(per_image[i]["hands_detected"] for i in b.ids))
    print(f"work {args.work}: {n_hands} hands detected in {len(b.ids)} images; {len(cues)} cues")
    hand_bounds(b)
    exposure_bound(b, per_image)
    base4, base2, base_auc = b.baseline(args.fast, "hands", b.hands_auc)
    b.cue_header(
        22, "hand", "   * saw every prompt (leaky); its within-set and alone figures use the shipped fit, not held out"
    )
    cleared = []
    for name, cue in cues.items():
        if callable(cue):
            held = {}
            for p in ds.prompts:
                fp = cue(p)
                held.update({i: fp[i] for i in b.ids if ds.items[i].prompt == p})
            f: Mapping[str, float] = held
            extra: Callable[[str], Mapping[str, float]] = cue
        else:
            f = cue
            extra = lambda _p, f=f: f  # noqa: E731
        row = b.cue_row(name, f, b.hand, 22)
        if not args.fast:
            h4, h2, k = b.prior_lopo(extra)
            prior_ok = h4 >= base4 + 3 and h2 >= base2
            if prior_ok or args.auc_all:
                a = b.hands_auc(f)
                ok = prior_ok and a >= base_auc - 0.02
                row += f" {h4:7.0f} {h2:3.0f} {k:>3d} {a:9.3f}  {'CLEARS' if ok else 'no'}"
                if ok:
                    cleared.append(name)
            else:
                row += f" {h4:7.0f} {h2:3.0f} {k:>3d} {'-':>9s}  no"
        print(row, flush=True)
    print(f"\n{len(cues)} cues tried; cleared the bar: {', '.join(cleared) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
