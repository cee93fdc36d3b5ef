"""Fitting the per-part image model (core.anomaly.parts) on labelled images, grouped by prompt.

Nothing here is fitted to single images: every figure is leave-one-group-out (a group is a
prompt: fit on the others, predict the held-out one, pool the held-out predictions). A feature
is kept only when dropping it lowers the held-out AUC (backward elimination); the honest figure
of that selection is nested: the selection itself is redone inside each outer fold, on the
training prompts only.

Held-out images are ranked by each fold's linear predictor without its constants (the raw-feature
weights w/scale times x: no bias, no -w*mean/scale offset). AUC is rank-based and the deployed
model has one constant for every image, so the constants only matter when predictions of
different folds are pooled: there each fold's intercept (fitted to the other prompts' base rate,
which moves against the held-out prompt's own) and its standardisation offsets would rank whole
prompts against each other, a handicap the shipped model never has (`base_rate_auc` measures it).
Selection uses the same constant-free pooled figure. The pooled probabilities with the fold
constants are kept too (`*_pred`), for the flag threshold and to show the old figure.

The logistic model is unweighted (its output is meant as P(error), so the base rate stays in
it), with an N(0, 1/l2) prior on the weights of standardised features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.anomaly.hand_model import roc_auc
from core.anomaly.parts import PartModel
from core.optim import logistic_map, sigmoid


def fit_part(x: np.ndarray, y: np.ndarray, features: Sequence[str], l2: float, threshold: float = 0.5) -> PartModel:
    """A PartModel on the columns of `x` named `features` (already selected)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    w, b = logistic_map((x - mean) / scale, y, l2, bias_l2=1e-6)
    return PartModel(
        tuple(features),
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        tuple(float(v) for v in w),
        b,
        threshold,
    )


def _predict(m: PartModel, x: np.ndarray) -> np.ndarray:
    z = (x - np.array(m.mean)) / np.array(m.scale)
    return sigmoid(z @ np.array(m.weights) + m.bias)


def linear_score(m: PartModel, x: np.ndarray) -> np.ndarray:
    """The model's linear predictor without its constants: sum of w/scale * x over the features.
    Ranks images exactly as the model's probability does (it differs by one constant)."""
    out: np.ndarray = x @ (np.array(m.weights) / np.array(m.scale))
    return out


@dataclass(frozen=True)
class HeldOut:
    """Leave-one-group-out predictions: `prob` with each fold's constants (its P(error)), `score`
    each fold's constant-free linear predictor (what pooling across folds should rank by)."""

    prob: np.ndarray
    score: np.ndarray


def held_out(x: np.ndarray, y: np.ndarray, groups: Sequence[str], l2: float) -> HeldOut:
    """Leave-one-group-out predictions of a model on all columns of `x`."""
    g = np.asarray(groups)
    prob = np.full(len(y), np.nan)
    score = np.full(len(y), np.nan)
    for name in np.unique(g):
        test = g == name
        train = ~test
        if y[train].all() or not y[train].any():
            prob[test] = y[train].mean()  # one class to learn from: predict its base rate
            score[test] = 0.0  # and rank nothing
            continue
        m = fit_part(x[train], y[train], [str(i) for i in range(x.shape[1])], l2)
        prob[test] = _predict(m, x[test])
        score[test] = linear_score(m, x[test])
    return HeldOut(prob, score)


def auc_or_half(scores: np.ndarray, y: np.ndarray) -> float:
    return roc_auc(scores, y) if y.any() and not y.all() else 0.5


def per_group_auc(scores: np.ndarray, y: np.ndarray, groups: Sequence[str]) -> dict[str, float | None]:
    """AUC within each group (None for a group with one class): free of any constant."""
    g = np.asarray(groups)
    return {
        str(n): (roc_auc(scores[g == n], y[g == n]) if y[g == n].any() and not y[g == n].all() else None)
        for n in np.unique(g)
    }


def mean_within(per_group: dict[str, float | None]) -> float:
    vals = [v for v in per_group.values() if v is not None]
    return float(np.mean(vals)) if vals else 0.5


def base_rate_auc(y: np.ndarray, groups: Sequence[str]) -> float:
    """Pooled leave-one-group-out AUC of the intercept-only model (each held-out group scored with
    the other groups' base rate). Below 0.5 whenever base rates differ between groups: leaving a
    group out moves the training base rate against it. Every fitted model's pooled figure carries
    part of this handicap; a raw, unfitted signal does not."""
    g = np.asarray(groups)
    if len(np.unique(g)) < 2:
        return 0.5  # nothing to leave out
    p = np.zeros(len(y))
    for name in np.unique(g):
        p[g == name] = y[g != name].mean()
    return auc_or_half(p, y)


def select(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], names: Sequence[str], l2: float
) -> tuple[list[str], list[tuple[str, float]], float]:
    """Backward elimination on held-out AUC: drop the feature whose removal costs least, as long as
    removing it costs nothing. Returns the kept names, (dropped name, held-out AUC gain from
    dropping it) in the order dropped, and the kept set's held-out AUC."""
    kept = list(names)
    col = {n: i for i, n in enumerate(names)}
    dropped: list[tuple[str, float]] = []

    def score(fs: list[str]) -> float:
        return auc_or_half(held_out(x[:, [col[f] for f in fs]], y, groups, l2).score, y)

    current = score(kept)
    while len(kept) > 1:
        trials = [(score([f for f in kept if f != d]), d) for d in kept]
        best, d = max(trials, key=lambda t: (t[0], -kept.index(t[1])))
        if best < current:
            break
        kept.remove(d)
        dropped.append((d, best - current))
        current = best
    return kept, dropped, current


@dataclass(frozen=True)
class Selection:
    l2: float
    kept: list[str]
    dropped: list[tuple[str, float]]
    auc: float  # held-out AUC of the kept features at this l2 (the selection saw these folds)


def select_and_tune(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], names: Sequence[str], l2s: Sequence[float]
) -> Selection:
    """Backward elimination at each prior strength in `l2s`; the strength whose selection scores
    best on held-out groups wins (ties go to the stronger prior: the smaller weights)."""
    best: Selection | None = None
    for l2 in sorted(l2s, reverse=True):
        kept, dropped, auc = select(x, y, groups, names, l2)
        if best is None or auc > best.auc:
            best = Selection(l2, kept, dropped, auc)
    if best is None:
        raise ValueError("no prior strength to try")
    return best


def youden_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The probability cut maximising sensitivity + specificity - 1 (midway between neighbours)."""
    if y.all() or not y.any():
        return 0.5
    cuts = np.unique(p)
    best, best_j = 0.5, -1.0
    for i, c in enumerate(cuts):
        flag = p >= c
        j = flag[y].mean() - flag[~y].mean()
        if j > best_j:
            lo = cuts[i - 1] if i > 0 else c
            best, best_j = float((lo + c) / 2), float(j)
    return best


@dataclass(frozen=True)
class PartFit:
    model: PartModel
    l2: float  # the prior strength the selection chose on all groups (the shipped model's)
    dropped: list[tuple[str, float]]
    lopo_auc: float  # constant-free held-out AUC of the selected features (selection saw these folds)
    nested_auc: float  # selection redone inside each outer fold, constant-free pooled: the honest figure
    nested_auc_with_constants: float  # the same predictions pooled as probabilities (fold constants in)
    nested_within_auc: float  # mean AUC within each held-out prompt (no constant can matter there)
    nested_pred: np.ndarray  # probabilities, each fold's constants in
    nested_score: np.ndarray  # each fold's constant-free linear predictor
    lopo_pred: np.ndarray
    lopo_score: np.ndarray
    per_group_auc: dict[str, float | None]  # nested, per held-out prompt
    nested_kept: dict[str, list[str]]
    nested_l2: dict[str, float]


def fit_with_selection(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], names: Sequence[str], l2s: Sequence[float]
) -> PartFit:
    """Features and prior strength (`l2s`) chosen by held-out AUC, then the model on every group;
    the nested figures redo both choices inside each outer fold on its training groups only."""
    g = np.asarray(groups)
    col = {n: i for i, n in enumerate(names)}
    nested = np.full(len(y), np.nan)
    nested_score = np.full(len(y), np.nan)
    nested_kept: dict[str, list[str]] = {}
    nested_l2: dict[str, float] = {}
    for name in np.unique(g):
        test, train = g == name, g != name
        inner = select_and_tune(x[train], y[train], list(g[train]), names, l2s)
        nested_kept[str(name)] = inner.kept
        nested_l2[str(name)] = inner.l2
        cols = [col[f] for f in inner.kept]
        if y[train].all() or not y[train].any():
            nested[test] = y[train].mean()
            nested_score[test] = 0.0
            continue
        m = fit_part(x[train][:, cols], y[train], inner.kept, inner.l2)
        nested[test] = _predict(m, x[test][:, cols])
        nested_score[test] = linear_score(m, x[test][:, cols])
    sel = select_and_tune(x, y, groups, names, l2s)
    cols = [col[f] for f in sel.kept]
    lopo = held_out(x[:, cols], y, groups, sel.l2)
    thr = youden_threshold(lopo.prob, y)
    per_group = per_group_auc(nested_score, y, groups)
    model = fit_part(x[:, cols], y, sel.kept, sel.l2, threshold=thr)
    return PartFit(
        model,
        sel.l2,
        sel.dropped,
        auc_or_half(lopo.score, y),
        auc_or_half(nested_score, y),
        auc_or_half(nested, y),
        mean_within(per_group),
        nested,
        nested_score,
        lopo.prob,
        lopo.score,
        per_group,
        nested_kept,
        nested_l2,
    )
