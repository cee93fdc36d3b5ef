"""How good bestshot's judgement is on human-annotated AI images of people (issue 10).

    .venv/bin/python benchmarks/judgement.py [--data DIR] [--work DIR] [--crops DIR] [--boot N]

`--data` is any folder laid out like ../shared/data/anatomy_dev (images/<generator>/<prompt>/,
annotations.csv; see benchmarks/anatomy_data.py for the parsing and the set rule). The images go
through the real `bestshot scan` in a root under `--work` (default /tmp/bestshot-judgement);
sidecars are cached there, so a rerun with unchanged extractors takes seconds. Prints:

1. per part (hands, limbs, feet): ROC AUC of the image-level score (core.anomaly.parts) against
   "has an error" with a bootstrap 95% interval, Spearman against severity, precision and recall
   of the report's own flag, the share flagged;
2. detection coverage: hands detected against the hands people could see (N of k/N), per generator;
3. clean reports: how many, and their mean hand+limb+foot severity against the rest;
4. ranking on sets of 4 and of 2 (per generator x prompt, by number: [1-4],[5-8] / [1-2],...):
   the user kept the least severe image (all five parts). The prior's top-1 (the shipped prior,
   and the prior refitted leave-one-prompt-out), chance and tie-adjusted chance; a simulated user
   whose decisions on 4 prompts train the project's own model (core.rank.train; decisions grouped
   by prompt, as the daemon groups them), tested on the 5th; P(winner) calibration (reliability
   table, ECE beside that of a perfectly calibrated model stating the same P) and uncertainty
   routing;
5. crops on ../shared/data/crop_scored (GAICD human crop scores): the MOS percentile of the crop
   the daemon would propose (its `crop` sidecar; the full frame when it says no crop is needed)
   and of the full frame, each via the candidate crop with the highest IoU.

Ties: a pick counts as a hit when its severity equals the set's minimum; tie-adjusted chance is
the mean share of such images in a set.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anatomy_data import (
    DEFAULT_DATA,
    Dataset,
    Scanned,
    data_parser,
    groups_of,
    load_dataset,
    run_script,
    scan,
    scan_folders,
    sets_of,
)

from core.anomaly.model import AnomalyReport
from core.anomaly.parts import PARTS, part_scores
from core.rank.calibration import expected_calibration_error, reliability
from core.rank.evaluate import Decision
from core.rank.features import FeatureSpace, ImageSignals, base_features
from core.rank.model import RankModel, RankModelError
from core.rank.prior import prior_model
from core.rank.prior_fit import PRIOR_CANDIDATES, QUALITY_TIEBREAK, LabelledGroup, fit_prior
from core.rank.propose import Member, propose
from core.rank.settings import PriorWeights, RankSettings
from core.rank.train import train

ALL_PARTS = ("torso", "limbs", "feet", "hands", "face")
CROPS = DEFAULT_DATA.parent / "crop_scored"


def auc(y: np.ndarray, x: np.ndarray) -> float:
    y = np.asarray(y, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(x)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def boot_ci(y: np.ndarray, x: np.ndarray, n: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        v = auc(y[idx], x[idx])
        if not math.isnan(v):
            vals.append(v)
    lo, hi = np.percentile(vals, [2.5, 97.5]) if vals else (float("nan"), float("nan"))
    return float(lo), float(hi)


def fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


# ---- 1-3: the anomaly report against the labels ------------------------------------------------
def per_part(ds: Dataset, sc: Scanned, boot: int) -> None:
    ids = list(ds.items)
    scores = {i: part_scores(sc.payloads[i]["anomalies"]) for i in ids}
    print("\n== 1. per part: image-level score (core.anomaly.parts) against the labels")
    if fitted_on(ds):
        print("in-sample (the shipped parts model was fitted on this folder; held-out figures follow):")
    else:
        print(
            f"the shipped parts model (fitted on {DEFAULT_DATA.name}, not on this folder: held out unless the "
            "folder holds the same images; refitted figures follow):"
        )
    print(f"{'part':6s} {'errors':>7s} {'AUC':>6s} {'95% CI':>14s} {'rho(sev)':>9s} {'flag prec':>9s} "
          f"{'recall':>7s} {'flagged':>8s}")  # fmt: skip
    for part in PARTS:
        y = np.array([ds.items[i].label.has_error[part] for i in ids])
        sev = np.array([ds.items[i].label.severity[part] for i in ids])
        x = np.array([scores[i][part].score for i in ids])
        flag = np.array([scores[i][part].flagged for i in ids])
        a = auc(y, x)
        lo, hi = boot_ci(y, x, boot)
        rho = float(spearmanr(x, sev).statistic) if np.std(x) > 0 else float("nan")
        prec = float(y[flag].mean()) if flag.any() else float("nan")
        rec = float(flag[y].mean()) if y.any() else float("nan")
        print(
            f"{part:6s} {int(y.sum()):>3d}/{len(y):<3d} {fmt(a):>6s} [{fmt(lo)}, {fmt(hi)}] {fmt(rho):>9s} "
            f"{fmt(prec):>9s} {fmt(rec):>7s} {flag.mean():>8.1%}"
        )
    held_out_parts(ds, sc, boot)
    # Reference: how much anatomy is on show, which no cue judges (the bar a cue should clear).
    feats = {i: base_features(sc.signals[i]) for i in ids}
    print("reference signals (exposure, not judgement): AUC per part")
    for name in ("wrists_without_hands", "wrists_visible", "knees_visible", "ankles_visible", "people"):
        x = np.array([np.nan if feats[i][name] is None else feats[i][name] for i in ids], dtype=np.float64)
        ok = ~np.isnan(x)
        row = "  ".join(
            f"{part} {fmt(auc(np.array([ds.items[i].label.has_error[part] for i in ids])[ok], x[ok]))}"
            for part in PARTS
        )
        print(f"  {name:22s} {row}")
    print("(flag precision is against a base rate of", ", ".join(
        f"{p} {np.mean([ds.items[i].label.has_error[p] for i in ids]):.0%}" for p in PARTS) + ")")  # fmt: skip


def held_out_parts(ds: Dataset, sc: Scanned, boot: int) -> None:
    """The same table from nested leave-one-prompt-out predictions: features selected and the model
    fitted on 4 prompts only, the 5th scored; the honest figure for other prompts."""
    from core.anomaly.parts_fit import fit_with_selection
    from scripts.fit_judgement import CANDIDATES, L2_GRID, image_features

    ids = [i for i in ds.items if "anomalies" in sc.payloads[i]]
    feats = {i: image_features(sc, i) for i in ids}
    groups = [ds.items[i].prompt for i in ids]
    print(
        "held out (nested leave-one-prompt-out, scripts/fit_judgement.py's fit; AUC, CI and rho rank each held-out "
        "image by its fold's linear predictor without fold constants, as the shipped model ranks; flags use the "
        "fold's probability):"
    )
    for part in PARTS:
        names = CANDIDATES[part]
        xf = np.array([[feats[i][f] for f in names] for i in ids], dtype=np.float64)
        y = np.array([ds.items[i].label.has_error[part] for i in ids], dtype=bool)
        sev = np.array([ds.items[i].label.severity[part] for i in ids])
        fit = fit_with_selection(xf, y, groups, names, L2_GRID)
        x = fit.nested_score
        flag = fit.nested_pred >= fit.model.threshold
        lo, hi = boot_ci(y, x, boot)
        prec = float(y[flag].mean()) if flag.any() else float("nan")
        rec = float(flag[y].mean()) if y.any() else float("nan")
        print(
            f"{part:6s} {int(y.sum()):>3d}/{len(y):<3d} {fmt(auc(y, x)):>6s} [{fmt(lo)}, {fmt(hi)}] "
            f"{fmt(float(spearmanr(x, sev).statistic)):>9s} {fmt(prec):>9s} {fmt(rec):>7s} {flag.mean():>8.1%}"
            f"   pooled with fold constants {fmt(fit.nested_auc_with_constants)}, "
            f"mean within a prompt {fmt(fit.nested_within_auc)}"
        )


def coverage(ds: Dataset, sc: Scanned) -> None:
    print("\n== 2. detection coverage: hands detected / hands people could see (N of k/N, images with N)")
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for i, it in ds.items.items():
        n = it.label.visible["hands"]
        hands = len(sc.payloads[i].get("hands", {}).get("hands", []))
        poses = len(sc.payloads[i].get("pose", {}).get("poses", []))
        faces = len(sc.payloads[i].get("face", {}).get("faces", []))
        for key in (it.generator, "all"):
            r = rows[key]
            r[4] += 1
            r[2] += poses
            r[3] += faces
            if n is not None:
                r[0] += hands
                r[1] += n
    print(f"{'generator':14s} {'detected':>9s} {'visible':>8s} {'share':>6s} {'persons/img (pose)':>19s} "
          f"{'faces/img':>10s}")  # fmt: skip
    for key in [*ds.generators, "all"]:
        det, vis, poses, faces, n = rows[key]
        print(f"{key:14s} {det:>9d} {vis:>8d} {det / max(vis, 1):>6.0%} {poses / n:>19.2f} {faces / n:>10.2f}")


def clean_reports(ds: Dataset, sc: Scanned) -> None:
    print("\n== 3. clean reports (AnomalyReport.clean: no anomaly, not uncertain, no part flagged)")
    clean, rest = [], []
    for i, it in ds.items.items():
        rep = sc.payloads[i]["anomalies"]
        sev = it.label.total_severity(("hands", "limbs", "feet"))
        is_clean = AnomalyReport.from_dict(rep).clean
        (clean if is_clean else rest).append(sev)
    print(
        f"clean {len(clean)}/{len(ds.items)} images, mean hand+limb+foot severity {fmt(np.mean(clean) if clean else None, '.2f')}"
        f" vs {fmt(np.mean(rest) if rest else None, '.2f')} for the rest" + ("  (target: lower)" if clean else "")
    )


# ---- 4: ranking --------------------------------------------------------------------------------
class Ranking:
    def __init__(self, ds: Dataset, sc: Scanned) -> None:
        self.ds = ds
        self.ids = list(ds.items)
        self.signals: dict[str, ImageSignals] = sc.signals
        self.bad = {i: ds.items[i].label.total_severity(ALL_PARTS) for i in self.ids}
        self.settings = RankSettings()
        self.space, z = FeatureSpace.fit_transform([self.signals[i] for i in self.ids], 0, 2)
        self.z = dict(zip(self.ids, z, strict=True))

    def hit(self, members: Sequence[str], pick: str) -> float:
        return float(self.bad[pick] == min(self.bad[m] for m in members))

    def chance(self, sets: Sequence[Sequence[str]]) -> tuple[float, float]:
        plain = float(np.mean([1 / len(s) for s in sets]))
        tied = float(np.mean([np.mean([self.hit(s, m) for m in s]) for s in sets]))
        return plain, tied

    def least_severe(self, members: Sequence[str]) -> str:
        return min(members, key=lambda m: (self.bad[m], members.index(m)))

    def groups(self, prompts: set[str]) -> list[LabelledGroup]:
        out = []
        for g in groups_of(self.ds):
            if self.ds.items[g[0]].prompt in prompts:
                out.append(
                    LabelledGroup(
                        self.ds.items[g[0]].prompt,
                        np.stack([self.z[i] for i in g]),
                        np.array([self.bad[i] for i in g]),
                    )
                )
        return out

    def prior_weights_for(self, weights: Mapping[str, float], temperature: float) -> PriorWeights:
        """These fitted weights plus the fixed quality tie-breakers, with the fit's held-out
        temperature, as they would ship."""
        table = dict.fromkeys(PriorWeights.model_fields, 0.0) | QUALITY_TIEBREAK | dict(weights)
        return PriorWeights.model_validate(table | {"temperature": temperature})

    def model_for_weights(self, weights: PriorWeights) -> RankModel:
        return prior_model(self.space, weights)

    def model_for(self, weights: Mapping[str, float], temperature: float) -> RankModel:
        """The prior with these fitted weights plus the fixed quality tie-breakers, as it would ship."""
        return prior_model(self.space, self.prior_weights_for(weights, temperature))

    def proposals(self, model: RankModel, sets: Sequence[Sequence[str]]) -> list[tuple[float, float, bool]]:
        """(hit, P(winner), routed uncertain) per set, through the daemon's own `propose`."""
        out = []
        for k, s in enumerate(sets):
            r = propose(f"s{k}", [Member(m, m, self.signals[m]) for m in s], model, self.settings)
            out.append((self.hit(s, r.winner), r.confidence, r.uncertain))
        return out


def fitted_on(ds: Dataset) -> bool:
    """Whether this is the folder the shipped parts model and prior were fitted on."""
    return ds.root.resolve() == DEFAULT_DATA.resolve()


def summarise(label: str, rows: Sequence[tuple[float, float, bool]], chance: tuple[float, float]) -> str:
    hits = np.array([r[0] for r in rows])
    if not len(hits):
        return f"{label:50s} no sets"
    return (
        f"{label:50s} top-1 {hits.mean():.3f} ({hits.sum():.0f}/{len(hits)})  chance {chance[0]:.3f}, "
        f"tie-adjusted {chance[1]:.3f}"
    )


def calibration_lines(label: str, rows: Sequence[tuple[float, float, bool]]) -> list[str]:
    if not rows:
        return [f"  {label}: no sets"]
    conf = np.array([r[1] for r in rows])
    hits = np.array([r[0] for r in rows])
    unc = np.array([r[2] for r in rows])
    # ECE over a few dozen sets is biased upwards and noisy: the reference is the ECE of a perfectly
    # calibrated model stating the same P (hits drawn from P), its mean and its 95th percentile
    rng = np.random.default_rng(0)
    ref = [expected_calibration_error(conf, rng.random(len(conf)) < conf) for _ in range(2000)]
    out = [
        f"  {label}: ECE {expected_calibration_error(conf, hits):.3f} over {len(rows)} sets "
        f"(a calibrated model stating the same P: mean {np.mean(ref):.3f}, 95th percentile "
        f"{np.percentile(ref, 95):.3f}); reliability:"
    ]
    for b in reliability(conf, hits):
        out.append(
            f"    P(winner) {b.lo:.1f}-{b.hi:.1f}: {b.n:>3d} sets, mean P {b.mean_p:.2f}, hit rate {b.hit_rate:.2f}"
        )
    routed = f"{int(unc.sum())}/{len(unc)} routed 'check'"
    if unc.any() and (~unc).any():
        routed += f"; top-1 {hits[unc].mean():.2f} among them vs {hits[~unc].mean():.2f} among the rest"
    out.append(f"    routing: {routed}")
    return out


def ranking(ds: Dataset, sc: Scanned) -> None:
    rk = Ranking(ds, sc)
    print("\n== 4. ranking: the user keeps the least severe image (all five parts)")
    shipped = prior_model(rk.space, rk.settings.prior)
    calib: list[str] = []
    for size in (4, 2):
        sets = sets_of(ds, size)
        ch = rk.chance(sets)
        rows = rk.proposals(shipped, sets)
        # the shipped weights were fitted on anatomy_dev itself: on that folder this row is in-sample
        where = "in-sample on anatomy_dev" if fitted_on(ds) else "fitted on anatomy_dev"
        print(summarise(f"sets of {size}: shipped prior ({where})", rows, ch))
        calib += calibration_lines(f"shipped prior, sets of {size}", rows)
    # The prior refitted with each prompt left out: the honest figure for a fitted prior.
    t0 = time.perf_counter()
    lopo: dict[int, list[tuple[float, float, bool]]] = {4: [], 2: []}
    chosen: list[str] = []
    held_prior: dict[str, PriorWeights] = {}
    for p in ds.prompts:
        w, _path, t = fit_prior(rk.groups(set(ds.prompts) - {p}), rk.space.names, PRIOR_CANDIDATES, rk.settings.l2)
        chosen.append(f"{p}: " + ", ".join(f"{k} {v:+.2f}" for k, v in w.items()) + f"; temperature {t:.2f}")
        model = rk.model_for(w, t)
        held_prior[p] = rk.prior_weights_for(w, t)
        for size in (4, 2):
            lopo[size] += rk.proposals(model, [s for s in sets_of(ds, size) if ds.items[s[0]].prompt == p])
    for size in (4, 2):
        print(summarise(f"sets of {size}: prior refitted LOPO", lopo[size], rk.chance(sets_of(ds, size))))
        calib += calibration_lines(f"prior refitted LOPO, sets of {size}", lopo[size])
    print(f"  (LOPO refits in {time.perf_counter() - t0:.0f} s; features chosen with each prompt held out:)")
    for line in chosen:
        print("    " + line)
    # A simulated user: decisions on 4 prompts train the project's own model; tested on the 5th.
    # Training shrinks towards the prior, so each fold uses the prior fitted without its prompt.
    for size in (4, 2):
        rows_u: list[tuple[float, float, bool]] = []
        rows_f: list[tuple[float, float, bool]] = []  # the model the daemon would put in force
        notes = []
        for p in ds.prompts:
            decisions = []
            for k, s in enumerate(t for t in sets_of(ds, size) if ds.items[t[0]].prompt != p):
                # grouped by prompt as the daemon groups the user's decisions
                # (daemon.rank.ranking.training_decisions), so the held-out slice, the folds that
                # choose the pull and the temperature, and the switch gate see unseen prompts, as
                # the held-out prompt is unseen; one group per set let every check see the prompt
                group = f"prompt:{ds.items[s[0]].prompt}"
                decisions.append(Decision(f"{p}:{k}", group, float(k), tuple(s), rk.least_severe(s)))
            try:
                res = train(decisions, rk.signals, rk.settings.model_copy(update={"prior": held_prior[p]}))
            except RankModelError as e:
                notes.append(f"{p}: no model ({e.reason})")
                continue
            test = [s for s in sets_of(ds, size) if ds.items[s[0]].prompt == p]
            rows_u += rk.proposals(res.model, test)
            # The daemon switches a trained model in only when its held-out slice says it is not
            # worse than what is in force (here the prior fitted without this prompt).
            rows_f += rk.proposals(res.model if res.switch else rk.model_for_weights(held_prior[p]), test)
            notes.append(f"{p}: switch={res.switch}")
        print(summarise(f"sets of {size}: simulated user, trained LOPO", rows_u, rk.chance(sets_of(ds, size))))
        print(summarise(f"sets of {size}: simulated user, model in force", rows_f, rk.chance(sets_of(ds, size))))
        print("  (" + "; ".join(notes) + ")")
        calib += calibration_lines(f"simulated user LOPO, sets of {size}", rows_u)
        calib += calibration_lines(f"simulated user, model in force, sets of {size}", rows_f)
    print("\n   calibration of P(winner) (hit = the proposed image is a least severe one):")
    for line in calib:
        print(line)


# ---- 5: crops ----------------------------------------------------------------------------------
def percentile(mos: np.ndarray, v: float) -> float:
    return float((mos < v).mean() + 0.5 * (mos == v).mean()) * 100


def nearest(boxes: np.ndarray, x: float, y: float, w: float, h: float) -> tuple[int, float]:
    ix = np.clip(np.minimum(x + w, boxes[:, 2]) - np.maximum(x, boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(y + h, boxes[:, 3]) - np.maximum(y, boxes[:, 1]), 0, None)
    inter = ix * iy
    iou = inter / (w * h + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter)
    k = int(np.argmax(iou))
    return k, float(iou[k])


def crops(crop_dir: Path, work: Path) -> None:
    print(f"\n== 5. crops on {crop_dir.name} (GAICD human crop scores; MOS percentile via the IoU-nearest candidate)")
    scores_file = crop_dir / "gaicd_crop_scores.json"
    if not scores_file.exists():
        print("skipped: no gaicd_crop_scores.json")
        return
    table = json.loads(scores_file.read_text())
    paths = sorted(p for p in crop_dir.glob("*.jpg") if p.name in table)
    folders = {f"gaicd_{k}": [(p.name, p) for p in paths[k : k + 4]] for k in range(0, len(paths), 4)}
    sc = scan_folders(folders, work / "crop_root")
    ours, full = [], []
    print(f"{'image':12s} {'verdict':15s} {'proposed pct':>12s} {'IoU':>5s} {'full frame pct':>14s} {'IoU':>5s}")
    for p in paths:
        entry = table[p.name]
        boxes = np.asarray(entry["crops"]["bbox"], dtype=np.float64)
        mos = np.asarray(entry["crops"]["score"], dtype=np.float64)
        crop = sc.payloads[p.name]["crop"]
        w, h = crop["image_size"]
        b = crop["best"]["box"] if crop.get("verdict") == "crop" and crop.get("best") else None
        box = (b["x"], b["y"], b["w"], b["h"]) if b else (0, 0, w, h)
        k1, iou1 = nearest(boxes, *box)
        k2, iou2 = nearest(boxes, 0, 0, w, h)
        ours.append(percentile(mos, mos[k1]))
        full.append(percentile(mos, mos[k2]))
        print(
            f"{p.name:12s} {crop.get('verdict', '?'):15s} {ours[-1]:>11.0f}% {iou1:>5.2f} {full[-1]:>13.0f}% {iou2:>5.2f}"
        )
    print(
        f"mean: proposed {np.mean(ours):.0f}th percentile, full frame {np.mean(full):.0f}th (target: proposed >= full frame)"
    )


def main() -> int:
    ap = data_parser(__doc__.split("\n")[0])
    ap.add_argument("--crops", type=Path, default=CROPS)
    ap.add_argument("--boot", type=int, default=2000, help="bootstrap resamples for the AUC intervals")
    args = ap.parse_args()
    ds = load_dataset(args.data, min_prompts=2)
    print(f"data: {args.data} ({len(ds.items)} images, {len(ds.prompts)} prompts, {len(ds.generators)} generators)")
    for issue in ds.issues:
        print(f"  label note: {issue}")
    sc = scan(ds, args.work)
    print(f"bestshot scan over {sc.root}: {sc.scan_seconds:.1f} s ({sc.scan_output})")
    sections: list[Callable[[], None]] = [
        lambda: per_part(ds, sc, args.boot),
        lambda: coverage(ds, sc),
        lambda: clean_reports(ds, sc),
        lambda: ranking(ds, sc),
    ]
    for run in sections:
        run()
    if args.crops.is_dir():
        crops(args.crops, args.work)
    else:
        print(f"\n== 5. crops: skipped, {args.crops} is absent")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
