"""One training run: fit the feature space and the model, evaluate honestly, decide on switching.

Called by the daemon after every `retrain_every_decisions` new decisions, nightly, and by
`bestshot train`. The deployed model is fit on the training groups only, so its held-out figures
describe the model actually used and a later model can be compared with it on the same unseen sets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.rank.card import model_card
from core.rank.evaluate import (
    Decision,
    Metrics,
    Split,
    evaluate,
    gate,
    group_split,
    latest_decisions,
    recent_split,
    to_choices,
)
from core.rank.features import FeatureSpace, ImageSignals
from core.rank.model import Choice, FitResult, RankModel, RankModelError, fit, make_version, warm_start
from core.rank.prior import prior_model, prior_weights
from core.rank.settings import RankSettings

_NO_SIGNALS = ImageSignals()


@dataclass(frozen=True)
class TrainResult:
    model: RankModel
    card: dict[str, Any]
    heldout: Metrics
    recent: Metrics | None  # None when the slice leaves too little older data to fit on
    switch: bool
    switch_reason: str
    # True when the model in force did worse than the prior on these held-out sets and the new one
    # does not earn its place either: the prior is put back in force.
    revert_to_prior: bool = False


def _shrink_to(space: FeatureSpace, settings: RankSettings) -> np.ndarray:
    """The weights a trained model is pulled towards: the prior's, fitted on labelled data. With
    few decisions the model stays near the prior; each decision moves it towards the user."""
    return prior_weights(space, settings.prior)


def _fit_model(
    decisions: Sequence[Decision],
    x_by_image: Mapping[str, np.ndarray],
    space: FeatureSpace,
    settings: RankSettings,
    init: np.ndarray | None,
    when: datetime,
    parent: str | None,
    shrink: Shrink,
) -> RankModel:
    choices = to_choices(decisions, x_by_image)
    t0 = time.perf_counter()
    res = _fit_at(choices, space, settings, shrink.strength, init)
    info = {
        "sets": len(choices),
        "l2": None if math.isinf(shrink.strength) else shrink.strength,
        "shrink": shrink.to_dict(),
        "iterations": res.iterations,
        "converged": res.converged,
        "warm_start": init is not None,
        "neg_log_posterior": res.neg_log_posterior,
        "seconds": round(time.perf_counter() - t0, 4),
        "device": "cpu (numpy)",
    }
    return RankModel(
        space,
        res.weights,
        res.cov,
        "model",
        make_version("rank", res.weights, space, when),
        when.astimezone(UTC).isoformat(),
        parent,
        info,
    )


def newest_split(decisions: Sequence[Decision], fraction: float) -> Split:
    """Held out: the newest `fraction` of the sets (at least one). Groups may be shared with
    training, which flatters the held-out figure; it is used only when groups cannot be split."""
    ordered = sorted(decisions, key=lambda d: (d.ts, d.set_id))
    k = max(1, round(len(ordered) * fraction)) if len(ordered) > 1 else 0
    return Split(ordered[: len(ordered) - k], ordered[len(ordered) - k :])


def _folds(decisions: Sequence[Decision]) -> tuple[list[Decision], dict[str, int], int]:
    """Up to 5 folds of whole groups; with a single group, of single sets (the only split left)."""
    usable = [d for d in decisions if len(d.members) > 1]
    groups = sorted({d.group for d in usable})
    if len(groups) < 2:
        usable = [replace(d, group=f"set:{d.set_id}") for d in usable]
        groups = sorted({d.group for d in usable})
    k = min(5, len(groups))
    return usable, {g: i % k for i, g in enumerate(groups)}, k


def _fit_at(
    choices: Sequence[Choice], space: FeatureSpace, settings: RankSettings, strength: float, init: np.ndarray | None
) -> FitResult:
    """MAP weights under N(prior, I/strength); an infinite strength is the prior itself."""
    mean = _shrink_to(space, settings)
    if math.isinf(strength):
        return FitResult(mean.copy(), np.zeros((space.dim, space.dim)), 0, True, 0.0)
    return fit(choices, space.dim, strength, init, settings.max_newton_iterations, mean=mean)


def _out_of_fold_utilities(
    decisions: Sequence[Decision],
    x_by_image: Mapping[str, np.ndarray],
    space: FeatureSpace,
    settings: RankSettings,
    strength: float,
) -> list[tuple[np.ndarray, int]]:
    """Utilities of each training set from a model fit without its group (up to 5 folds)."""
    usable, fold, k = _folds(decisions)
    out: list[tuple[np.ndarray, int]] = []
    if k < 2:
        return out
    for f in range(k):
        train_part = [d for d in usable if fold[d.group] != f]
        test_part = [d for d in usable if fold[d.group] == f]
        res = _fit_at(to_choices(train_part, x_by_image), space, settings, strength, None)
        for d in test_part:
            x = np.stack([x_by_image[m] for m in d.members])
            out.append((x @ res.weights, d.members.index(d.winner)))
    return out


def _log_lik(u: np.ndarray, w: int) -> float:
    top = float(u.max())
    return float(u[w]) - top - math.log(float(np.exp(u - top).sum()))


def _name(strength: float) -> str:
    return "prior" if math.isinf(strength) else f"{strength:g}"


def _json(strength: float) -> float | str:
    return "prior" if math.isinf(strength) else strength


@dataclass(frozen=True)
class Shrink:
    """The pull towards the prior a model was fitted with (inf: the prior itself), and the
    out-of-fold evidence for it."""

    strength: float
    heldout_loglik: Mapping[float, float]  # mean per set, by strength
    reason: str
    scored: tuple[tuple[np.ndarray, int], ...] = ()  # out-of-fold utilities at `strength`

    def to_dict(self) -> dict[str, Any]:
        return {
            "strength": _json(self.strength),
            "heldout_loglik": {_name(k): round(v, 4) for k, v in self.heldout_loglik.items()},
            "reason": self.reason,
        }


def choose_shrink(
    decisions: Sequence[Decision], x_by_image: Mapping[str, np.ndarray], space: FeatureSpace, settings: RankSettings
) -> Shrink:
    """How far the user's decisions may pull the model from the prior, judged on those decisions.

    Each strength in `rank.shrink_strengths`, and the prior itself (an infinite strength), is
    scored by the mean log-likelihood of the training sets predicted out of fold (whole groups left
    out, each candidate at its best temperature); the strongest pull within one standard error of the best is kept (the one-standard-error
    rule). A user whose decisions the prior already explains, or who has too few of them to tell,
    keeps the prior's ranking exactly instead of noise fitted to a few dozen sets: a weak fixed pull
    (l2 = 1 on ~40 features) let 20 uninformative decisions move the ranking below the prior it
    started from (benchmarks/judgement.py, simulated user).
    """
    strengths = [*sorted(set(settings.shrink_strengths)), math.inf]
    scored = {s: _out_of_fold_utilities(decisions, x_by_image, space, settings, s) for s in strengths}
    if not scored[strengths[0]]:
        return Shrink(math.inf, {}, "too few sets to cross-validate: the prior itself")
    # each candidate at its own best temperature (fitted next anyway): the pull is chosen for how
    # well it orders the sets, not for how bold the prior's scale happens to be for this user
    temps = {s: fit_temperature(v) for s, v in scored.items()}
    ll = {s: np.array([_log_lik(u / temps[s], w) for u, w in v]) for s, v in scored.items()}
    means = {s: float(v.mean()) for s, v in ll.items()}
    best = max(strengths, key=lambda s: means[s])
    se = float(ll[best].std(ddof=1) / math.sqrt(len(ll[best]))) if len(ll[best]) > 1 else 0.0
    chosen = max(s for s in strengths if means[s] >= means[best] - se)
    reason = (
        f"strength {_name(chosen)}: held-out log-likelihood {means[chosen]:.3f} per set, within one standard "
        f"error ({se:.3f}) of the best {means[best]:.3f} (strength {_name(best)}) over {len(ll[best])} sets"
    )
    return Shrink(chosen, means, reason, tuple(scored[chosen]))


def fit_temperature(scored: Sequence[tuple[np.ndarray, int | Sequence[int]]]) -> float:
    """The T minimising the log-loss of softmax(u / T) on held-out choices (1 when there are none).

    A choice's winner may be several members (tied winners): its likelihood is then the
    probability of picking any of them."""
    if not scored:
        return 1.0

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        total = 0.0
        for u, w in scored:
            z = u / t
            top = float(z.max())
            e = np.exp(z - top)
            total -= math.log(float(e[w].sum()) / float(e.sum()))
        return total

    # golden-section search over log T in [log 0.1, log 50]: the loss is unimodal in T
    lo, hi = math.log(0.1), math.log(50.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


def calibrate(model: RankModel, shrink: Shrink) -> RankModel:
    """P(winner) made honest: the utilities are divided by a temperature fitted on out-of-fold
    predictions of the training sets (each set predicted by a model that never saw its group,
    fitted with the same pull towards the prior). Scaling weights by 1/T and the covariance by
    1/T^2 is that temperature on every posterior draw."""
    t = fit_temperature(shrink.scored)
    info = dict(model.info, temperature=round(t, 4))
    return RankModel(
        model.space, model.weights / t, model.cov / t**2, model.source, model.version, model.created, model.parent, info
    )


def train(
    decisions: Sequence[Decision],
    library: Mapping[str, ImageSignals],
    settings: RankSettings,
    previous: RankModel | None = None,
    now: datetime | None = None,
) -> TrainResult:
    """`library`: signals of every image the daemon knows (decided or not), keyed by image id.

    The feature space (standardisation, PCA) is fit on the whole library, which uses no labels.
    Raises RankModelError when fewer than `min_train_decisions` sets are available for training.
    """
    when = now or datetime.now(UTC)
    decisions = latest_decisions(decisions)
    space, x_library = FeatureSpace.fit_transform(
        list(library.values()), settings.pca_components, settings.pca_min_images
    )
    x_by_image = dict(zip(library.keys(), x_library, strict=True))
    ids = sorted({m for d in decisions for m in d.members})
    unknown = [i for i in ids if i not in library]
    x_by_image.update(zip(unknown, space.transform([_NO_SIGNALS] * len(unknown)), strict=True))
    split = group_split(decisions, settings.heldout_fraction, settings.split_salt)
    held_by = "groups"
    if not any(len(d.members) > 1 for d in split.heldout) or not any(len(d.members) > 1 for d in split.train):
        # Few prompt groups: the salted split can leave nothing (or everything) held out. A model
        # is never judged on nothing, so the newest decisions are held out instead.
        split = newest_split(decisions, settings.heldout_fraction)
        held_by = "newest decisions"
    n_train = sum(len(d.members) > 1 for d in split.train)
    if n_train < settings.min_train_decisions:
        raise RankModelError(
            None,
            f"only {n_train} decided sets outside the held-out groups; training needs "
            f"{settings.min_train_decisions} (rank.min_train_decisions), the prior ranks until then",
        )
    parent = previous.version if previous is not None else None
    shrink = choose_shrink(split.train, x_by_image, space, settings)
    model = _fit_model(split.train, x_by_image, space, settings, warm_start(previous, space), when, parent, shrink)
    model = calibrate(model, shrink)

    s = settings.posterior_samples
    heldout = evaluate(model, split.heldout, library, s, x_by_image)
    prior = evaluate(prior_model(space, settings.prior, when), split.heldout, library, s, x_by_image)
    current = evaluate(previous, split.heldout, library, s) if previous is not None else None
    switch, revert, reason = gate(heldout, prior, current)
    reason = f"{reason} (held out: {held_by})"

    recent_metrics: Metrics | None = None
    rsplit = recent_split(decisions, settings.recent_slice)
    if sum(len(d.members) > 1 for d in rsplit.train) >= settings.min_train_decisions:
        rmodel = _fit_model(rsplit.train, x_by_image, space, settings, model.weights, when, None, shrink)
        recent_metrics = evaluate(rmodel, rsplit.heldout, library, s, x_by_image)

    card = model_card(
        model,
        data_ts=max((d.ts for d in decisions), default=None),
        counts={
            "decided_sets": len(decisions),
            "train_sets": n_train,
            "heldout_sets": heldout.n,
            "library_images": len(library),
            "decided_images_without_signals": len(unknown),
        },
        metrics={"model": heldout, "prior": prior, "current": current, "recent_slice": recent_metrics},
        switch=(switch, reason),
        revert_to_prior=revert,
        split={
            "heldout_by": held_by,
            "heldout_fraction": settings.heldout_fraction,
            "salt": settings.split_salt,
            "recent_slice": settings.recent_slice,
        },
    )
    return TrainResult(model, card, heldout, recent_metrics, switch, reason, revert)
