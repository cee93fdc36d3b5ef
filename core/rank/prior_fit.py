"""Fitting the prior's weights on labelled images (scripts/fit_prior.py; LOPO in benchmarks/judgement.py).

The labelled data are groups of images made from one prompt by one generator, each image with a
human "badness" (the anatomy-error severity); the user this prior stands in for keeps the least
bad image of a set. Within each group every pair of images with different badness is one choice
(the less bad one wins), and a conditional logit on the standardised features is fit with the
ranking model's own Newton solver (`core.rank.model.fit`), so the weights are on the scale the
prior uses: P(winner) = softmax(w . z / T) over a set, T the held-out temperature.

Features are chosen by forward selection on held-out prompts: a feature enters only if it raises
the mean pair log-likelihood on prompts left out of the fit (every way round), so a feature that
adds nothing held-out gets no weight. Nothing is fitted to single images, and nothing identifies
a generator or a file format.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.rank.model import Choice, fit

# Features the prior may use: what an image shows and what the checks found; never the embedding
# (a look, not a quality), a near-duplicate flag, or anything naming a generator or file format.
PRIOR_CANDIDATES: tuple[str, ...] = (
    "sharpness_log",
    "contrast",
    "exposure_dev",
    "clipping",
    "noise",
    "brisque",
    "subject_fraction",
    "subject_sharpness_log",
    "face_present",
    "face_size",
    "hands_visible",
    "pose_completeness",
    "wrists_visible",
    "knees_visible",
    "ankles_visible",
    "wrists_without_hands",
    "people",
    "anomaly_count",
    "anomaly_score_sum",
    "anomaly_score_max",
    "anomaly_uncertain",
    "anomaly_uncertain_regions",
    "anomaly_hands",
    "anomaly_limbs",
    "anomaly_feet",
)

# Quality weights the anatomy labels cannot support or refute (the labelled renders are all sharp):
# a quarter of the former hand-set values, so that a blurred or artefacted copy still loses a tie.
QUALITY_TIEBREAK: dict[str, float] = {"subject_sharpness_log": 0.1, "sharpness_log": 0.075, "brisque": -0.1}

# Improvement in held-out mean pair log-likelihood (nats per pair) a feature must bring to enter.
MIN_GAIN = 1e-3


@dataclass(frozen=True)
class LabelledGroup:
    fold: str  # what is held out together (the prompt)
    x: np.ndarray  # (n, d) standardised features, columns as `names`
    badness: np.ndarray  # (n,) lower is what the user keeps


def pair_choices(groups: Sequence[LabelledGroup], cols: Sequence[int]) -> list[Choice]:
    out = []
    for g in groups:
        x = g.x[:, list(cols)]
        n = len(g.badness)
        for a in range(n):
            for b in range(a + 1, n):
                if g.badness[a] == g.badness[b]:
                    continue
                out.append(Choice(x[[a, b]], 0 if g.badness[a] < g.badness[b] else 1))
    return out


def fit_weights(groups: Sequence[LabelledGroup], cols: Sequence[int], l2: float) -> np.ndarray:
    if not cols:
        return np.zeros(0)
    return fit(pair_choices(groups, cols), len(cols), l2).weights


def pair_loglik(groups: Sequence[LabelledGroup], cols: Sequence[int], w: np.ndarray) -> tuple[float, int]:
    """Summed log-likelihood of the pair choices in `groups` under weights `w`, and their count."""
    total, n = 0.0, 0
    for c in pair_choices(groups, cols):
        u = c.features @ w if len(cols) else np.zeros(2)
        d = float(u[c.winner] - u[1 - c.winner])
        total += -math.log1p(math.exp(-d)) if d > -30 else d
        n += 1
    return total, n


def heldout_loglik(groups: Sequence[LabelledGroup], cols: Sequence[int], l2: float) -> float:
    """Mean pair log-likelihood on each fold when fit on the others (leave-one-fold-out)."""
    folds = sorted({g.fold for g in groups})
    total, n = 0.0, 0
    for f in folds:
        train = [g for g in groups if g.fold != f]
        test = [g for g in groups if g.fold == f]
        w = fit_weights(train, cols, l2)
        t, k = pair_loglik(test, cols, w)
        total, n = total + t, n + k
    return total / max(n, 1)


def select_features(
    groups: Sequence[LabelledGroup], names: Sequence[str], candidates: Sequence[str], l2: float
) -> tuple[list[str], list[tuple[str, float]]]:
    """Forward selection by held-out (leave-one-fold-out) pair log-likelihood.

    Returns the chosen names and the path: (name added, held-out log-likelihood after adding it),
    starting with ("", the empty model's -log 2)."""
    col = {n: j for j, n in enumerate(names)}
    chosen: list[str] = []
    best = heldout_loglik(groups, [], l2)
    path = [("", best)]
    while True:
        trials = [
            (heldout_loglik(groups, [col[n] for n in [*chosen, c]], l2), c) for c in candidates if c not in chosen
        ]
        if not trials:
            break
        score, c = max(trials)
        if score < best + MIN_GAIN:
            break
        chosen.append(c)
        best = score
        path.append((c, score))
    return chosen, path


def set_choices(group: LabelledGroup, cols: Sequence[int], sizes: Sequence[int]) -> list[tuple[np.ndarray, list[int]]]:
    """The group's members cut in order into sets of each size (as benchmarks/judgement.py cuts
    them), each with its least bad members: (rows, indices of the tied winners)."""
    out = []
    for size in sizes:
        for start in range(0, len(group.badness) - size + 1, size):
            bad = group.badness[start : start + size]
            rows = group.x[start : start + size][:, list(cols)]
            out.append((rows, [i for i, b in enumerate(bad) if b == bad.min()]))
    return out


def heldout_temperature(
    groups: Sequence[LabelledGroup], names: Sequence[str], candidates: Sequence[str], l2: float
) -> float:
    """The temperature that makes P(winner) honest on prompts the fit never saw, for sets of 4 and
    of 2 alike: each fold's sets scored by weights whose features were selected, and then fitted,
    on the other folds only; T fitted on all of them (core.rank.train.fit_temperature, a tie
    counting as a hit for any least bad member).

    The selection is redone inside each fold because it is the noisiest step: with features chosen
    on every fold, the held-out scores had seen their own folds, the temperature came out too small
    and the prior stated 0.67 on sets of 2 it got right 28% of the time (benchmarks/judgement.py).
    Sets of both sizes, not all pairs, because P(winner) is stated per set of the size the user has."""
    from core.rank.train import fit_temperature

    col = {n: j for j, n in enumerate(names)}
    scored: list[tuple[np.ndarray, int | Sequence[int]]] = []
    for f in sorted({g.fold for g in groups}):
        train = [g for g in groups if g.fold != f]
        chosen, _ = select_features(train, names, candidates, l2)
        cols = [col[n] for n in chosen]
        w = fit_weights(train, cols, l2)
        for g in groups:
            if g.fold == f:
                scored += [(x @ w if cols else np.zeros(len(x)), win) for x, win in set_choices(g, cols, (4, 2))]
    return fit_temperature(scored)


def fit_prior(
    groups: Sequence[LabelledGroup], names: Sequence[str], candidates: Sequence[str], l2: float
) -> tuple[dict[str, float], list[tuple[str, float]], float]:
    """Selected features and their weights fitted on every group; the selection path; the held-out
    temperature that P(winner) is divided by (`rank.prior.temperature`; the ranking keeps the
    weights as fitted, and a trained model is pulled towards them)."""
    chosen, path = select_features(groups, names, candidates, l2)
    col = {n: j for j, n in enumerate(names)}
    cols = [col[n] for n in chosen]
    w = fit_weights(groups, cols, l2)
    t = heldout_temperature(groups, names, candidates, l2)
    return {n: float(v) for n, v in zip(chosen, w, strict=True)}, path, t
