"""Limb evidence that could rank images within a set, measured on the anatomy dev set (issue 10).

    .venv/bin/python benchmarks/limb_cues.py [--data DIR] [--work DIR] [--only NAME ...] [--fast]

Reads the sidecars of a `benchmarks/judgement.py` work dir (the real `bestshot scan`, cached: pose,
face, hands and the U²-Netp + selfie subject mask) and computes candidate limb cues that no
shipped feature has, each with an a-priori direction (higher = more likely wrong):

- pose visibility: how unsure the pose model is of the landmarks it placed in the frame (mean of
  v(1 - v) over the 8 elbow/wrist/knee/ankle points or all 33; share of limb points with v in
  0.2-0.8; a visible distal joint whose proximal joint is in the frame but not visible);
- subject mask against the skeletons: limb bones whose samples fall outside the mask (a limb the
  pose drew where no body is), mask area far from every skeleton, face and hand (an extra limb or
  a blob), the mask's width across each limb bone over the person's scale (two limbs fused, or a
  third leg beside one);
- proportions: upper/lower arm and thigh/shin ratios in 2D and in 3D (pose z, which MediaPipe
  gives on the x scale), left against right, limb over torso, each as |log(value / median)| with
  the median over every image's persons (no labels);
- joint angles: the smallest elbow and knee angle (3D).

For each: Spearman with limb and with total severity within a generator x prompt group (mean over
the 15 groups; and in how many of the 5 prompts its mean with limb severity is positive), top-1 on the fixed sets of 4 and 2 when the cue alone picks the
image (lowest wins), leave-one-prompt-out top-1 of the prior (core.rank.prior_fit, as
benchmarks/judgement.py refits it) with the cue as one more candidate, and the nested
leave-one-prompt-out limbs AUC of the parts fit (scripts/fit_judgement.py) with it as one more
candidate. The bar a cue must clear to ship (fixed before measuring): prior top-1 on sets of 4 up
by >= 3 sets, sets of 2 not lower, limbs AUC not down by more than 0.02.

Also printed: how many sets a perfect reading of each part's severity would win (the bound on what
any cue for that part can do), the same for a limb reading correlated rho with the truth, two
combinations of the cues fitted leave-one-prompt-out (a ridge on within-group ranks; a unit-weight
sum of the cues whose within-group correlation is positive in every training prompt), and the
prior with its features standardised within each set instead of over the library.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anatomy_data import Dataset, Scanned, data_parser, groups_of, load_dataset, run_script, scan, sets_of
from judgement import ALL_PARTS, Ranking

from core.rank.prior_fit import PRIOR_CANDIDATES, QUALITY_TIEBREAK, LabelledGroup, fit_weights, select_features
from core.sidecar_types import POSE, faces_from_payload, hands_from_payload, poses_from_payload

VISIBLE = 0.5
MASK = 0.5  # subject mask threshold (extractors.subject_threshold)
SIDES = ("left", "right")
LIMB_POINTS = tuple(f"{s}_{j}" for s in SIDES for j in ("elbow", "wrist", "knee", "ankle"))
LIMB_BONES = tuple(
    (f"{s}_{a}", f"{s}_{b}")
    for s in SIDES
    for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"))
)
TORSO_BONES = (
    ("left_shoulder", "right_shoulder"),
    ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"),
)
# Raw readings whose cue is the deviation from the median over all persons (no labels).
MEDIAN_DEVIATIONS = ("arm_ratio", "leg_ratio", "arm_torso", "leg_torso", "arm3_ratio", "leg3_ratio")
LEFT_RIGHT = ("arm_lr", "leg_lr", "arm3_lr", "leg3_lr")


# ---- cues from one image's sidecars ------------------------------------------------------------
def _visible(p: np.ndarray, name: str, w: int, h: int) -> bool:
    x, y, _, v = p[POSE[name]]
    return bool(v >= VISIBLE and 0 <= x < w and 0 <= y < h)


def _in_frame(p: np.ndarray, name: str, w: int, h: int) -> bool:
    x, y = p[POSE[name], :2]
    return bool(0 <= x < w and 0 <= y < h)


def _scale(p: np.ndarray) -> float:
    """A person's size in pixels: shoulder width, or half the shoulder-to-hip length if larger."""
    ls, rs, lh, rh = (p[POSE[n], :2] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    return max(float(np.linalg.norm(ls - rs)), 0.5 * float(np.linalg.norm((ls + rs) / 2 - (lh + rh) / 2)), 1.0)


def _run(mask: np.ndarray, c: np.ndarray, d: np.ndarray, most: int) -> int:
    """Mask pixels from c along direction d before the mask ends (at most `most`)."""
    h, w = mask.shape
    for n in range(most):
        x, y = round(c[0] + d[0] * n), round(c[1] + d[1] * n)
        if not (0 <= x < w and 0 <= y < h) or not mask[y, x]:
            return n
    return most


def _mask_cues(
    poses: Sequence[np.ndarray], pay: Mapping[str, dict], mask: np.ndarray, w: int, h: int
) -> dict[str, float]:
    s = float(pay["saliency"]["scale"])
    mh, mw = mask.shape
    inside = total = 0
    worst = 0.0
    widths: list[float] = []
    skeleton = np.zeros_like(mask)
    for p in poses:
        r = _scale(p) * s
        for a, b in LIMB_BONES:
            if not (_visible(p, a, w, h) and _visible(p, b, w, h)):
                continue
            A, B = p[POSE[a], :2] * s, p[POSE[b], :2] * s
            pts = A[None] + np.linspace(0, 1, 20)[:, None] * (B - A)[None]
            hit = mask[np.clip(pts[:, 1].astype(int), 0, mh - 1), np.clip(pts[:, 0].astype(int), 0, mw - 1)]
            inside, total, worst = inside + int(hit.sum()), total + len(hit), max(worst, 1.0 - float(hit.mean()))
            length = float(np.linalg.norm(B - A))
            if length >= 3:
                u = (B - A) / length
                n = np.array([-u[1], u[0]])
                across = [
                    _run(mask, A + t * (B - A), n, int(2 * r)) + _run(mask, A + t * (B - A), -n, int(2 * r))
                    for t in np.linspace(0.2, 0.8, 7)
                ]
                widths.append(max(across) / r)
        for a, b in LIMB_BONES + TORSO_BONES:
            if max(p[POSE[a], 3], p[POSE[b], 3]) >= 0.3:
                pts = (
                    p[POSE[a], :2][None] + np.linspace(0, 1, 40)[:, None] * (p[POSE[b], :2] - p[POSE[a], :2])[None]
                ) * s
                xi, yi = pts[:, 0].astype(int), pts[:, 1].astype(int)
                ok = (xi >= 0) & (xi < mw) & (yi >= 0) & (yi < mh)
                skeleton[yi[ok], xi[ok]] = True
    for f in faces_from_payload(pay["face"]):
        x0, y0, x1, y1 = (max(int(v * s), 0) for v in (f.box.x, f.box.y, f.box.x2, f.box.y2))
        skeleton[y0:y1, x0:x1] = True
    for hd in hands_from_payload(pay["hands"]):
        pts = (hd.landmarks[:, :2] * s).astype(int)
        ok = (pts[:, 0] >= 0) & (pts[:, 0] < mw) & (pts[:, 1] >= 0) & (pts[:, 1] < mh)
        skeleton[pts[ok, 1], pts[ok, 0]] = True
    area = max(int(mask.sum()), 1)
    if skeleton.any():
        radius = 0.5 * (float(np.median([_scale(p) for p in poses])) if poses else 0.1 * max(w, h)) * s
        far = mask & (ndimage.distance_transform_edt(~skeleton) > radius)
        labels, count = ndimage.label(far)
        far_share, blob = far.sum() / area, (np.bincount(labels.ravel())[1:].max() / area if count else 0.0)
    else:
        far_share = blob = 1.0
    return {
        "bone_out_frac": 1.0 - inside / total if total else 0.0,
        "bone_out_worst": worst,
        "mask_far": float(far_share),
        "mask_far_blob": float(blob),
        "limb_width_max": max(widths, default=0.0),
        "limb_width_mean": float(np.mean(widths)) if widths else 0.0,
    }


def _pose_cues(poses: Sequence[np.ndarray], w: int, h: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    limb_v: list[float] = []
    all_v: list[float] = []
    inconsistent = 0
    angles: dict[str, list[float]] = {"elbow": [], "knee": []}
    raw: dict[str, list[float]] = {k: [] for k in (*MEDIAN_DEVIATIONS, *LEFT_RIGHT)}
    for p in poses:
        for name in POSE:
            if _in_frame(p, name, w, h):
                all_v.append(float(p[POSE[name], 3]))
                if name in LIMB_POINTS:
                    limb_v.append(float(p[POSE[name], 3]))
        P = p[:, :3].copy()
        P[:, 2] *= w  # pose z is on the scale of the image width
        torso = _scale(p)
        for plane, pts in (("", p[:, :2]), ("3", P)):

            def length(a: str, b: str, pts: np.ndarray = pts, p: np.ndarray = p) -> float | None:
                ok = _visible(p, a, w, h) and _visible(p, b, w, h)
                v = float(np.linalg.norm(pts[POSE[a]] - pts[POSE[b]])) if ok else 0.0
                return v if v > 1.0 else None

            limbs: dict[str, dict[str, float]] = {"arm": {}, "leg": {}}
            for side in SIDES:
                for limb, (j0, j1, j2) in (("arm", ("shoulder", "elbow", "wrist")), ("leg", ("hip", "knee", "ankle"))):
                    upper, lower = length(f"{side}_{j0}", f"{side}_{j1}"), length(f"{side}_{j1}", f"{side}_{j2}")
                    if upper and lower:
                        raw[f"{limb}{plane}_ratio"].append(math.log(upper / lower))
                        limbs[limb][side] = upper + lower
                        if not plane:
                            raw[f"{limb}_torso"].append(math.log((upper + lower) / torso))
            for limb in ("arm", "leg"):
                if len(limbs[limb]) == 2:
                    raw[f"{limb}{plane}_lr"].append(abs(math.log(limbs[limb]["left"] / limbs[limb]["right"])))
        for side in SIDES:
            for distal, proximal in (("wrist", "elbow"), ("elbow", "shoulder"), ("ankle", "knee"), ("knee", "hip")):
                d, q = f"{side}_{distal}", f"{side}_{proximal}"
                inconsistent += _visible(p, d, w, h) and not _visible(p, q, w, h) and _in_frame(p, q, w, h)
            for joint, (a, b, c) in (("elbow", ("shoulder", "elbow", "wrist")), ("knee", ("hip", "knee", "ankle"))):
                names = (f"{side}_{a}", f"{side}_{b}", f"{side}_{c}")
                if all(_visible(p, n, w, h) for n in names):
                    u, v = P[POSE[names[0]]] - P[POSE[names[1]]], P[POSE[names[2]]] - P[POSE[names[1]]]
                    cos = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-9))
                    angles[joint].append(math.degrees(math.acos(min(1.0, max(-1.0, cos)))))
    lv, av = np.array(limb_v), np.array(all_v)
    cues = {
        "vis_ent_limbs": float(np.mean(lv * (1 - lv))) if lv.size else 0.0,
        "vis_ent_all": float(np.mean(av * (1 - av))) if av.size else 0.0,
        "vis_mid_limbs": float(np.mean((lv > 0.2) & (lv < 0.8))) if lv.size else 0.0,
        "vis_inconsistent": math.log1p(inconsistent),
        "min_elbow_angle": min(angles["elbow"], default=180.0),
        "min_knee_angle": min(angles["knee"], default=180.0),
    }
    return cues, raw


def image_cues(sc: Scanned, image_id: str) -> tuple[dict[str, float], dict[str, list[float]]]:
    pay = sc.payloads[image_id]
    w, h = pay["pose"]["image_size"]
    poses = [q.landmarks for q in poses_from_payload(pay["pose"])]
    mask = np.load(sc.root / "sidecar" / "saliency" / f"{sc.sha[image_id]}.npy").astype(np.float32) > MASK
    cues, raw = _pose_cues(poses, w, h)
    return cues | _mask_cues(poses, pay, mask, w, h), raw


def all_cues(sc: Scanned, ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Every cue of every image; the proportion readings become their largest deviation from the
    median over all persons of all images (left/right differences are deviations from 0)."""
    got = {i: image_cues(sc, i) for i in ids}
    medians = {k: float(np.median([v for _, raw in got.values() for v in raw[k]] or [0.0])) for k in MEDIAN_DEVIATIONS}
    out = {}
    for i, (cues, raw) in got.items():
        dev = {f"{k}_dev": max((abs(v - medians[k]) for v in raw[k]), default=0.0) for k in MEDIAN_DEVIATIONS}
        out[i] = cues | dev | {k: max(raw[k], default=0.0) for k in LEFT_RIGHT}
    return out


# ---- measurement -------------------------------------------------------------------------------
class Bench:
    def __init__(self, ds: Dataset, sc: Scanned) -> None:
        self.ds, self.sc = ds, sc
        self.rk = Ranking(ds, sc)
        self.ids = list(ds.items)
        self.pos = {i: k for k, i in enumerate(self.ids)}
        self.prompt = np.array([ds.items[i].prompt for i in self.ids])
        self.groups = groups_of(ds)
        self.sets = {4: sets_of(ds, 4), 2: sets_of(ds, 2)}
        self.total = {i: ds.items[i].label.total_severity(ALL_PARTS) for i in self.ids}
        self.limb = {i: ds.items[i].label.severity["limbs"] for i in self.ids}
        self.z = np.stack([self.rk.z[i] for i in self.ids])
        self.names = list(self.rk.space.names)
        self._parts_features: dict[str, dict[str, float]] | None = None

    def within(self, f: Mapping[str, float], target: Mapping[str, float], prompt: str | None = None) -> float:
        """Mean Spearman over generator x prompt groups (of one prompt, if given), over the images
        both readings have."""
        rs = []
        for g in self.groups:
            if prompt is not None and self.ds.items[g[0]].prompt != prompt:
                continue
            known = [i for i in g if i in f and i in target]
            x, y = [f[i] for i in known], [target[i] for i in known]
            if np.std(x) > 0 and np.std(y) > 0:
                rs.append(float(spearmanr(x, y).statistic))
        return float(np.mean(rs)) if rs else float("nan")

    def alone(self, f: Mapping[str, float], size: int) -> float:
        """Sets won when the lowest cue value is picked (ties share the hit)."""
        hit = 0.0
        for s in self.sets[size]:
            sev, v = np.array([self.total[i] for i in s]), np.array([f[i] for i in s])
            hit += float(np.mean([sev[k] == sev.min() for k in np.flatnonzero(v == v.min())]))
        return hit

    def reading(self, target: Mapping[str, float], rho: float, rng: np.random.Generator) -> dict[str, float]:
        """One draw of a simulated reading correlated `rho` with the within-group ranks of `target`."""
        f: dict[str, float] = {}
        for g in self.groups:
            r = rankdata([target[i] for i in g])
            v = rho * (r - r.mean()) / r.std() + math.sqrt(1 - rho**2) * rng.standard_normal(len(g))
            f.update(zip(g, v, strict=True))
        return f

    def baseline(
        self, fast: bool, part: str, auc: Callable[[Mapping[str, float] | None], float]
    ) -> tuple[float, float, float]:
        """The bar's reference, printed: the prior's LOPO top-1 (sets of 4, of 2) and the part's
        nested AUC without any extra cue (not computed with --fast)."""
        base4, base2, _ = (0.0, 0.0, 0) if fast else self.prior_lopo()
        base_auc = float("nan") if fast else auc(None)
        line = (
            "not computed (--fast)"
            if fast
            else f"prior LOPO sets of 4 {base4:.0f}/30, sets of 2 {base2:.0f}/60, {part} nested AUC {base_auc:.3f}"
        )
        print(f"\n== cues (higher = more likely wrong); baseline: {line}")
        return base4, base2, base_auc

    def cue_header(self, width: int, part: str, note: str | None = None) -> None:
        if note:
            print(note)
        print(f"{'cue':{width}s} {'rho ' + part:>8s} {'total':>6s} {'+prompts':>8s} {'alone 4':>7s} {'2':>5s} "
              f"{'prior 4':>7s} {'2':>3s} {'sel':>3s} {part + 's AUC':>9s}  bar")  # fmt: skip

    def cue_row(self, name: str, f: Mapping[str, float], target: Mapping[str, float], width: int) -> str:
        """A cue's within-group Spearman with its part's and the total severity, the prompts where
        the first is positive, and the sets it wins alone."""
        positive = sum(self.within(f, target, p) > 0 for p in self.ds.prompts)
        return (f"{name:{width}s} {self.within(f, target):+8.3f} {self.within(f, self.total):+6.3f} {positive:>6d}/5 "
                f"{self.alone(f, 4):7.1f} {self.alone(f, 2):5.1f}")  # fmt: skip

    def _zcol(self, f: Mapping[str, float]) -> np.ndarray:
        x = np.array([f[i] for i in self.ids], dtype=np.float64)
        return (x - x.mean()) / (x.std() if x.std() > 1e-12 else 1.0)

    def _labelled(
        self, z: np.ndarray, prompts: set[str], units: Sequence[Sequence[str]] | None = None
    ) -> list[LabelledGroup]:
        return [
            LabelledGroup(self.ds.items[g[0]].prompt, z[[self.pos[i] for i in g]], np.array([self.total[i] for i in g]))
            for g in (units or self.groups)
            if self.ds.items[g[0]].prompt in prompts
        ]

    def prior_lopo(
        self,
        extra: Callable[[str], Mapping[str, float]] | None = None,
        z: np.ndarray | None = None,
        units: Sequence[Sequence[str]] | None = None,
    ) -> tuple[float, float, int]:
        """Leave-one-prompt-out top-1 (sets of 4, of 2) of the refitted prior, as judgement.py
        refits it (forward selection by held-out pair log-likelihood, quality tie-breakers), with
        `extra(held-out prompt)` as one more candidate; how many folds selected it."""
        chosen_in = 0
        hits = {4: 0.0, 2: 0.0}
        for p in self.ds.prompts:
            zz, names = (self.z if z is None else z), list(self.names)
            if extra is not None:
                zz, names = np.hstack([zz, self._zcol(extra(p))[:, None]]), [*names, "cue"]
            col = {n: j for j, n in enumerate(names)}
            train = self._labelled(zz, set(self.ds.prompts) - {p}, units)
            cands = [*PRIOR_CANDIDATES, "cue"] if extra is not None else list(PRIOR_CANDIDATES)
            chosen, _ = select_features(train, names, cands, self.rk.settings.l2)
            chosen_in += "cue" in chosen
            w = np.zeros(len(names))
            for n, v in QUALITY_TIEBREAK.items():
                w[col[n]] = v
            cols = [col[n] for n in chosen]
            w[cols] = fit_weights(train, cols, self.rk.settings.l2)
            for size in (4, 2):
                for s in self.sets[size]:
                    if self.ds.items[s[0]].prompt == p:
                        u = zz[[self.pos[i] for i in s]] @ w
                        sev = [self.total[i] for i in s]
                        hits[size] += float(sev[int(np.argsort(-u, kind="stable")[0])] == min(sev))
        return hits[4], hits[2], chosen_in

    def limbs_auc(self, extra: Mapping[str, float] | None) -> float:
        """Nested leave-one-prompt-out limbs AUC of the parts fit, the cue one more candidate."""
        from core.anomaly.parts_fit import fit_with_selection
        from scripts.fit_judgement import CANDIDATES, L2_GRID, image_features

        if self._parts_features is None:
            self._parts_features = {i: image_features(self.sc, i) for i in self.ids}
        pf = self._parts_features
        names = [*CANDIDATES["limbs"], *(["cue"] if extra is not None else [])]
        x = np.array([[extra[i] if n == "cue" and extra is not None else pf[i][n] for n in names] for i in self.ids])
        y = np.array([self.ds.items[i].label.has_error["limbs"] for i in self.ids], dtype=bool)
        return float(fit_with_selection(x, y, list(self.prompt), names, L2_GRID).nested_auc)


def bounds(b: Bench) -> None:
    print("\n== what a perfect reading of one part's severity would win (the cue alone picks the least severe)")
    for part in ALL_PARTS:
        f = {i: b.ds.items[i].label.severity[part] for i in b.ids}
        print(f"  {part:6s} sets of 4 {b.alone(f, 4):5.1f}/30, sets of 2 {b.alone(f, 2):5.1f}/60, "
              f"within-group Spearman with total severity {b.within(f, b.total):+.3f}")  # fmt: skip
    rng = np.random.default_rng(0)
    for rho in (0.2, 0.3, 0.5):
        wins = []
        for _ in range(200):
            wins.append(b.alone(b.reading(b.limb, rho, rng), 4))
        print(
            f"  limb reading correlated {rho} with the limb-severity ranks within a group: sets of 4 {np.mean(wins):.1f}/30"
        )


def combinations(b: Bench, cues: Mapping[str, Mapping[str, float]]) -> None:
    names = sorted(cues)
    x = np.array([[cues[n][i] for n in names] for i in b.ids])
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    xc = x.copy()
    for g in b.groups:
        idx = [b.pos[i] for i in g]
        xc[idx] -= xc[idx].mean(0)
    y = np.zeros(len(b.ids))
    for g in b.groups:
        r = rankdata([b.limb[i] for i in g])
        y[[b.pos[i] for i in g]] = (r - r.mean()) / r.std()

    def ridge(train: np.ndarray) -> np.ndarray:
        a = xc[train]
        return x @ np.linalg.solve(a.T @ a + 100.0 * np.eye(a.shape[1]), a.T @ y[train])

    kept: dict[tuple[str, ...], list[str]] = {}

    def unit(train_prompts: Sequence[str]) -> np.ndarray:
        keep = [
            j for j, n in enumerate(names)
            if min(r := [b.within(cues[n], b.limb, q) for q in train_prompts]) > 0 and np.mean(r) >= 0.2
        ]  # fmt: skip
        kept[tuple(train_prompts)] = [names[j] for j in keep]
        return x[:, keep].sum(1) if keep else np.zeros(len(b.ids))

    print("\n== combinations fitted leave-one-prompt-out (target: within-group rank of limb severity)")
    for label, make in (
        ("ridge (l2 100) on within-group centred cues", lambda ps: ridge(np.isin(b.prompt, ps))),
        ("unit-weight sum of cues with rho > 0 in every training prompt, mean >= 0.2", unit),
    ):

        def nested(p: str, make: Callable[[list[str]], np.ndarray] = make) -> dict[str, float]:
            """The cue for the prior fitted without p: each training prompt q scored by a
            combination fitted without p and q, p by one fitted without p."""
            v = np.zeros(len(b.ids))
            for q in b.ds.prompts:
                rest = [r for r in b.ds.prompts if r not in {p, q}] if q != p else [r for r in b.ds.prompts if r != p]
                v[b.prompt == q] = make(rest)[b.prompt == q]
            return dict(zip(b.ids, v, strict=True))

        held = np.zeros(len(b.ids))
        for p in b.ds.prompts:
            held[b.prompt == p] = make([r for r in b.ds.prompts if r != p])[b.prompt == p]
        f = dict(zip(b.ids, held, strict=True))
        h4, h2, k = b.prior_lopo(nested)
        print(f"  {label}: held-out rho limb {b.within(f, b.limb):+.3f} total {b.within(f, b.total):+.3f}; "
              f"alone 4: {b.alone(f, 4):.1f}/30 2: {b.alone(f, 2):.1f}/60; in the prior 4: {h4:.0f}/30 2: {h2:.0f}/60 "
              f"(chosen in {k}/5 folds)")  # fmt: skip
    for p in b.ds.prompts:
        print(
            f"    unit-weight cues with {p} held out: {', '.join(kept[tuple(r for r in b.ds.prompts if r != p)]) or 'none'}"
        )


def within_set_prior(b: Bench) -> None:
    print("\n== the prior with its features standardised within each set of 4 (trained on sets of 4)")
    units = b.sets[4]
    zr, zs = b.z.copy(), b.z.copy()
    for s in units:
        idx = [b.pos[i] for i in s]
        for j in range(b.z.shape[1]):
            c = b.z[idx, j]
            zr[idx, j] = (rankdata(c) - c.size / 2 - 0.5) / max(float(np.std(rankdata(c))), 1e-9)
            zs[idx, j] = (c - c.mean()) / c.std() if c.std() > 1e-9 else 0.0
    for label, z in (("library z (as shipped)", b.z), ("within-set ranks", zr), ("within-set z", zs)):
        h4, h2, _ = b.prior_lopo(z=z, units=units)
        print(
            f"  {label:24s} LOPO top-1 sets of 4 {h4:.0f}/30, sets of 2 {h2:.0f}/60 (sets of 2 read with set-of-4 statistics)"
        )


def cue_parser(doc: str | None) -> argparse.ArgumentParser:
    """The cue scripts' options: data_parser's and --only, --fast."""
    ap = data_parser((doc or "").split("\n")[0])
    ap.add_argument("--only", nargs="*", help="measure only these cues")
    ap.add_argument("--fast", action="store_true", help="no prior refits or parts fits (correlations and top-1 alone)")
    return ap


def main() -> int:
    args = cue_parser(__doc__).parse_args()
    ds = load_dataset(args.data, min_prompts=2)
    sc = scan(ds, args.work)
    b = Bench(ds, sc)
    per_image = all_cues(sc, b.ids)
    cues = {n: {i: per_image[i][n] for i in b.ids} for n in per_image[b.ids[0]] if not args.only or n in args.only}
    bounds(b)
    base4, base2, base_auc = b.baseline(args.fast, "limbs", b.limbs_auc)
    b.cue_header(18, "limb")
    for name, f in cues.items():
        row = b.cue_row(name, f, b.limb, 18)
        if not args.fast:
            h4, h2, k = b.prior_lopo(lambda _p, f=f: f)
            a = b.limbs_auc(f)
            ok = h4 >= base4 + 3 and h2 >= base2 and a >= base_auc - 0.02
            row += f" {h4:7.0f} {h2:3.0f} {k:>3d} {a:9.3f}  {'CLEARS' if ok else 'no'}"
        print(row, flush=True)
    if not args.fast:
        combinations(b, cues)
        within_set_prior(b)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
