"""Fit the per-part image model (core/anomaly/parts_model.json) and write its model card.

    .venv/bin/python scripts/fit_judgement.py [--data DIR] [--work DIR] [--write]

Runs the real `bestshot scan` over the labelled set (benchmarks/anatomy_data.py; sidecars cached
under --work), rebuilds each image's anomaly report from its stored detections with the code in
this tree, computes every candidate feature (core.anomaly.parts.FEATURES) and, per part, selects
features by held-out AUC and fits an L2 logistic model, all leave-one-prompt-out. Prints the
figures; with --write it replaces core/anomaly/parts_model.json and parts_model.md.

Features never include the generator, the file format or the image size, and nothing is fitted to
single images: the unit held out is a whole prompt.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.anatomy_data import Dataset, Scanned, data_parser, load_dataset, run_script, scan  # noqa: E402
from core.anomaly.hand_model import roc_auc  # noqa: E402
from core.anomaly.parts import FEATURES, FORMAT, PARTS, part_features  # noqa: E402
from core.anomaly.parts_fit import PartFit, base_rate_auc, fit_with_selection  # noqa: E402
from core.anomaly.settings import AnomalySettings  # noqa: E402
from core.crop.from_sidecars import anomaly_report, inputs_from_results  # noqa: E402
from core.extractors.base import SidecarResult  # noqa: E402

MODEL_JSON = REPO / "core" / "anomaly" / "parts_model.json"
MODEL_CARD = REPO / "core" / "anomaly" / "parts_model.md"
# Prior strengths on the standardised weights (N(0, 1/l2)) the fit may choose from, per part, by
# held-out AUC (nested like the feature selection). One only: choosing among 1, 10 and 100 lowered
# every nested figure (hands 0.666 -> 0.616, feet 0.737 -> 0.377), because the folds then pick
# different strengths and their constant-free predictors come out on different scales, which
# pooling ranks against each other.
L2_GRID = (1.0,)
# Candidate features per part: what could plausibly bear on that part's errors.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "hands": (
        "people",
        "visible_wrists",
        "hands",
        "wrists_without_hands",
        "hand_low_score",
        "hand_cue",
        "hand_cues",
        "world_disagreement",
        "unposed_faces",
        "finger_ratio",
        "world_collapse",
        "world_palm_flip",
        "hand_mean_low_score",
        "hands_per_person",
        "handedness_mismatch",
        "hand_over_forearm",
        "hand_over_face",
        "world_hyperextension",
        "world_proportions",
        "world_crossings",
    ),
    "limbs": (
        "people",
        "limb_joints",
        "visible_wrists",
        "wrists_without_hands",
        "limb_cue",
        "unposed_faces",
        "visible_knees",
        "visible_elbows",
    ),
    "feet": (
        "people",
        "foot_points",
        "foot_cue",
        "limb_joints",
        "wrists_without_hands",
        "unposed_faces",
        "visible_ankles",
        "visible_knees",
    ),
}


def image_features(scanned: Scanned, image_id: str) -> dict[str, float]:
    """The candidate features of one image, from its stored detections and this tree's cues."""
    pay = scanned.payloads[image_id]
    results: dict[str, Any] = {n: SidecarResult(pay[n]) for n in ("hands", "pose", "face") if n in pay}
    if "saliency" in pay:
        npy = scanned.root / "sidecar" / "saliency" / f"{scanned.sha[image_id]}.npy"
        results["saliency"] = SidecarResult(pay["saliency"], {"subject": np.load(npy, allow_pickle=False)})
    w, h = pay["anomalies"]["image_size"]
    inputs = inputs_from_results(results)
    report = anomaly_report(inputs, int(w), int(h), AnomalySettings())
    return part_features(inputs.hands, inputs.poses, inputs.faces, report, inputs.hand_world, AnomalySettings())


def bootstrap_ci(p: np.ndarray, y: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        if y[i].any() and not y[i].all():
            vals.append(roc_auc(p[i], y[i]))
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def main(argv: list[str] | None = None) -> int:
    ap = data_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write parts_model.json and the model card")
    args = ap.parse_args(argv)
    dataset = load_dataset(args.data, min_prompts=2)
    print(f"data: {args.data} ({len(dataset.items)} images, {len(dataset.prompts)} prompts)")
    scanned = scan(dataset, args.work)
    ids = [i for i in dataset.items if "anomalies" in scanned.payloads[i]]
    missing = [i for i in dataset.items if i not in ids]
    if missing:
        print(f"no anomaly report for {len(missing)} images (left out): {missing}")
    feats = {i: image_features(scanned, i) for i in ids}
    groups = [dataset.items[i].prompt for i in ids]
    fits: dict[str, PartFit] = {}
    lines: list[str] = []
    for part in PARTS:
        names = CANDIDATES[part]
        x = np.array([[feats[i][f] for f in names] for i in ids], dtype=np.float64)
        y = np.array([dataset.items[i].label.has_error[part] for i in ids], dtype=bool)
        fit = fit_with_selection(x, y, groups, names, L2_GRID)
        fits[part] = fit
        lines += report_part(part, fit, y, groups, [dataset.items[i].label.severity[part] for i in ids])
    lines += clean_report(dataset, ids, fits)
    lines += region_scorer_report(dataset, scanned, ids)
    print("\n".join(lines))
    if args.write:
        write_model(dataset, ids, fits, lines)
        print(f"wrote {MODEL_JSON.relative_to(REPO)} and {MODEL_CARD.relative_to(REPO)}")
    return 0


def report_part(part: str, fit: PartFit, y: np.ndarray, groups: list[str], severity: list[float]) -> list[str]:
    from scipy.stats import spearmanr

    lo, hi = bootstrap_ci(fit.nested_score, y)
    clo, chi = bootstrap_ci(fit.nested_pred, y)
    m = fit.model
    flag = fit.lopo_pred >= m.threshold
    prec = float(y[flag].mean()) if flag.any() else float("nan")
    rec = float(flag[y].mean()) if y.any() else float("nan")
    rho = float(spearmanr(fit.nested_score, severity).statistic)
    within = [a for a in fit.per_group_auc.values() if a is not None]
    out = [
        f"\n## {part}: {int(y.sum())} of {len(y)} images with an error",
        f"nested leave-one-prompt-out AUC {fit.nested_auc:.3f} (bootstrap 95% {lo:.3f}-{hi:.3f}): held-out images "
        f"ranked by their fold's linear predictor without fold constants, as the shipped model ranks; "
        f"Spearman with severity {rho:.3f}",
        f"same predictions pooled as probabilities (each fold's intercept and offsets in): AUC "
        f"{fit.nested_auc_with_constants:.3f} (bootstrap 95% {clo:.3f}-{chi:.3f})",
        f"mean AUC within a held-out prompt: {fit.nested_within_auc:.3f} ({len(within)} prompts with both classes)",
        "per held-out prompt: "
        + ", ".join(f"{g} {'n/a (one class)' if a is None else f'{a:.3f}'}" for g, a in fit.per_group_auc.items()),
        f"leave-one-prompt-out AUC with the selected features {fit.lopo_auc:.3f} "
        "(the selection saw these folds; the nested figures above did not)",
        f"intercept-only model (the training prompts' base rate), pooled with its constants: AUC "
        f"{base_rate_auc(y, groups):.3f} (the handicap fold constants put on pooled probabilities; 0.5 without them)",
        f"flag at P >= {m.threshold:.3f}: precision {prec:.3f}, recall {rec:.3f}, flagged {flag.mean():.1%} "
        "(held-out predictions)",
        "kept features and weights (standardised): "
        + ", ".join(f"{f} {w:+.3f}" for f, w in zip(m.features, m.weights, strict=True))
        + f"; bias {m.bias:+.3f}",
        "dropped (held-out AUC change from dropping it): "
        + (", ".join(f"{d} {g:+.3f}" for d, g in fit.dropped) or "none"),
        "features kept inside each outer fold: " + "; ".join(f"{g}: {','.join(k)}" for g, k in fit.nested_kept.items()),
    ]
    if len(L2_GRID) > 1:
        out.append(
            f"prior strength l2 {fit.l2:g} (chosen inside each outer fold: "
            + ", ".join(f"{g} {v:g}" for g, v in fit.nested_l2.items())
            + ")"
        )
    return out


def region_scorer_report(dataset: Dataset, scanned: Scanned, ids: list[str]) -> list[str]:
    """The learned hand scorer (core.anomaly.hand_model on core.anomaly.regions descriptors, no CLIP
    weights) leave-one-prompt-out. The labels stand in for the user's tags: every detected hand of
    an image takes the image's hand label (an image-level label; which hand is wrong is unknown),
    and an image scores as its most suspicious hand."""
    from scipy.stats import spearmanr

    from core.anomaly.hand_model import held_out_probabilities
    from core.anomaly.regions import APPEARANCE_DIM, hand_descriptor
    from core.anomaly.world import hand_world_from_payload
    from core.imaging import load
    from core.sidecar_types import hands_from_payload

    rows: list[np.ndarray] = []
    owner: list[str] = []
    for i in ids:
        hp = scanned.payloads[i]["hands"]
        hands = hands_from_payload(hp)
        if not hands:
            continue
        rgb = load(dataset.items[i].path).rgb
        for hand, world in zip(hands, hand_world_from_payload(hp), strict=True):
            rows.append(hand_descriptor(rgb, hand, world)[0])
            owner.append(i)
    x = np.stack(rows)
    groups = [dataset.items[i].prompt for i in owner]
    settings = AnomalySettings().hand_model.model_copy(update={"folds": len(set(groups))})
    img_ids = sorted(set(owner))
    sev = np.array([dataset.items[i].label.severity["hands"] for i in img_ids])
    median = float(np.median(sev))
    img_y = np.array([dataset.items[i].label.has_error["hands"] for i in img_ids], dtype=bool)
    img_g = np.array([dataset.items[i].prompt for i in img_ids])
    out = [
        f"\n## learned hand scorer (region descriptors, no CLIP), leave-one-prompt-out: {len(owner)} hands "
        f"of {len(img_ids)} images with hands ({int((~img_y).sum())} of them without a hand error)"
    ]
    labels = {
        "has a hand error": lambda i: dataset.items[i].label.has_error["hands"],
        f"hand severity above the median ({median:.2f})": lambda i: dataset.items[i].label.severity["hands"] > median,
    }
    for label_name, label_of in labels.items():
        y = np.array([label_of(i) for i in owner], dtype=bool)
        iy = np.array([label_of(i) for i in img_ids], dtype=bool)
        out.append(f"training label per hand = its image's '{label_name}' ({int(y.sum())} of {len(y)} hands):")
        for name, cols in (
            ("appearance + geometry", slice(None)),
            ("appearance only", slice(0, APPEARANCE_DIM)),
            ("geometry only", slice(APPEARANCE_DIM, None)),
        ):
            p = held_out_probabilities(x[:, cols], y, groups, settings, standardise=True)
            img_p = np.array([np.nanmax(p[[k for k, o in enumerate(owner) if o == i]]) for i in img_ids])
            within = [
                roc_auc(img_p[img_g == g], iy[img_g == g])
                for g in sorted(set(img_g))
                if iy[img_g == g].any() and not iy[img_g == g].all()
            ]
            out.append(
                f"  {name}: hand-level AUC {roc_auc(p, y):.3f}; image-level (most suspicious hand) AUC "
                f"{roc_auc(img_p, iy):.3f}, mean within-prompt {np.mean(within):.3f} ({len(within)} prompts); "
                f"Spearman with hand severity {spearmanr(img_p, sev).statistic:.3f}"
            )
    return out


def clean_report(dataset: Dataset, ids: list[str], fits: dict[str, PartFit]) -> list[str]:
    """Images whose nested held-out part scores are all below their thresholds, against the rest."""
    flagged = np.zeros(len(ids), dtype=bool)
    for fit in fits.values():
        flagged |= fit.nested_pred >= fit.model.threshold
    sev = np.array([dataset.items[i].label.total_severity() for i in ids])
    clean = ~flagged
    rest = float(sev[flagged].mean()) if flagged.any() else float("nan")
    mean_clean = float(sev[clean].mean()) if clean.any() else float("nan")
    return [
        "\n## clean by part evidence (held-out predictions, no part flagged)",
        f"{int(clean.sum())} of {len(ids)} images clean: mean hand+limb+foot severity {mean_clean:.2f} "
        f"against {rest:.2f} for the rest",
    ]


def write_model(dataset: Dataset, ids: list[str], fits: dict[str, PartFit], lines: list[str]) -> None:
    parts = {p: f.model.to_dict() for p, f in fits.items()}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    doc = {
        "format": FORMAT,
        "version": f"parts-{digest}",
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {
            "source": "anatomy_dev (hastingslab-org/ai-human-images, half of its prompts)",
            "images": len(ids),
            "prompts": dataset.prompts,
            "label": "has_error: mean over annotators of 'marked an error on this part' >= 0.5",
        },
        "l2": {p: f.l2 for p, f in fits.items()},
        "parts": parts,
        "held_out": {
            p: {
                "nested_lopo_auc": round(f.nested_auc, 4),
                "nested_lopo_auc_with_fold_constants": round(f.nested_auc_with_constants, 4),
                "nested_mean_within_prompt_auc": round(f.nested_within_auc, 4),
                "lopo_auc": round(f.lopo_auc, 4),
            }
            for p, f in fits.items()
        },
    }
    MODEL_JSON.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    feature_doc = "\n".join(f"- `{k}`: {v}" for k, v in FEATURES.items())
    card = f"""# Part evidence model ({doc["version"]})

What it is: per body part (hands, limbs, feet) an L2 logistic regression (prior N(0, 1/l2) on the
weights of standardised features, l2 {" or ".join(f"{v:g}" for v in L2_GRID)}, see below;
unweighted classes so the output is P(error) with the base rate in it) on image-level features of one image's detections and anomaly report
(`core/anomaly/parts.py`). A part scored at or above its threshold is flagged and the image is
not clean. Fitted by `scripts/fit_judgement.py --write` on {doc["fitted_at"]}.

Data: {len(ids)} images of {doc["data"]["source"]}: prompts {", ".join(dataset.prompts)};
3 generators x 8 images each. Label per part: {doc["data"]["label"]}. Never used as features:
the generator, the file format, the image size, or anything identifying single images.
The labels are noisy (annotator kappa on hands 0.46) and hands have very few negatives.

Validation: leave-one-prompt-out (fit on 4 prompts, predict the 5th, every way round, held-out
predictions pooled). The pooled held-out figure ranks each held-out image by its fold's linear
predictor **without the fold's constants**: the raw-feature weights (w / scale) times the features,
no bias and no -w * mean / scale offset. AUC depends only on the ranking, and the shipped model
scores every image with one and the same constant, so within one model the constants cannot move
an image's rank; they only matter when the predictions of five different fold models are pooled.
There each fold's intercept (fitted to the other four prompts' base rate, which moves against the
held-out prompt's own) and its standardisation offsets (the other prompts' feature means) shift a
whole prompt up or down against the others. The intercept-only line shows the size of that
effect (well below 0.5 with the constants; exactly 0.5 without). The constants can also
help by accident: a held-out prompt with unusual features moves the training means, so its
offset carries "this prompt differs" into the pooled ranking, which the shipped model never has.
Both pooled figures are printed (the constant-free one first: it is the headline, and feature
selection maximises it), with the mean AUC within a held-out prompt, which no constant affects but
which ignores differences between prompts (a prompt with only one class counts for nothing).
Feature selection is backward elimination on the constant-free held-out AUC (a feature is dropped
when dropping it costs nothing); the **nested** figures redo the selection inside each outer fold
on the 4 training prompts only, so they are the honest ones. The flag threshold maximises
sensitivity + specificity - 1 on the held-out probabilities (the fold constants in).

Candidate features:
{feature_doc}

Pooling constant-free predictors still assumes the fold models are alike: two folds whose
weights differ also differ in w * (typical feature values), which shifts their prompts against
each other. This is why the prior strength is fixed (l2 {" or ".join(f"{v:g}" for v in L2_GRID)}): choosing it per fold from 1, 10
and 100 by the same held-out AUC put the folds' predictors on different scales and lowered every
nested figure (hands 0.666 -> 0.616, feet 0.737 -> 0.377).

Caveats: the features read the detectors' output, so a change to the detectors (more people per
image, hands at a higher resolution) changes their distribution: rerun this script after one.
A kept cue may carry a negative weight (on this data a firing hand geometry cue, or a flipped
palm reading, marks a hand the detector could read at all, and readable hands are the ones
without errors here); it is kept because it helps on held-out prompts, not because an error
makes an image look cleaner. Hands have few negatives (11 of 120), so their AUC is uncertain
(see the bootstrap interval). The hand plausibility features (`core/anomaly/plausibility.py`)
judge each hand against anatomical limits (joints bent backwards past their range, a palm against
its forearm and face) and against a typical hand's proportions as MediaPipe's world head draws
them: those references are the median reading over the hands found in these same images (no
labels used), so the held-out prompt's hands took part in them.

The last section below measures the learned hand scorer (core/anomaly/hand_model.py on the
`regions` descriptors, no CLIP weights) the same way; it is not part of this model and ships
untrained (it learns from the user's own decisions, behind its held-out gate).

## Figures
```
{chr(10).join(line for line in lines if line.strip())}
```

## Fitted values
```json
{json.dumps(parts, indent=1)}
```
"""
    MODEL_CARD.write_text(card, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(run_script(main))
