"""One training run: fit the feature space and the model, evaluate honestly, decide on switching.

Called by the daemon after every `retrain_every_decisions` new decisions, nightly, and by
`bestshot train`. The deployed model is fit on the training groups only, so its held-out figures
describe the model actually used and a later model can be compared with it on the same unseen sets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.rank.card import model_card
from core.rank.evaluate import (
    Decision,
    Metrics,
    evaluate,
    group_split,
    latest_decisions,
    recent_split,
    should_switch,
    to_choices,
)
from core.rank.features import FeatureSpace, ImageSignals
from core.rank.model import RankModel, RankModelError, fit, make_version, warm_start
from core.rank.prior import prior_model
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


def _fit_model(
    decisions: Sequence[Decision],
    x_by_image: Mapping[str, np.ndarray],
    space: FeatureSpace,
    settings: RankSettings,
    init: np.ndarray | None,
    when: datetime,
    parent: str | None,
) -> RankModel:
    choices = to_choices(decisions, x_by_image)
    t0 = time.perf_counter()
    res = fit(choices, space.dim, settings.l2, init, settings.max_newton_iterations)
    info = {
        "sets": len(choices),
        "l2": settings.l2,
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
    n_train = sum(len(d.members) > 1 for d in split.train)
    if n_train < settings.min_train_decisions:
        raise RankModelError(
            None,
            f"only {n_train} decided sets outside the held-out groups; training needs "
            f"{settings.min_train_decisions} (rank.min_train_decisions), the prior ranks until then",
        )
    parent = previous.version if previous is not None else None
    model = _fit_model(split.train, x_by_image, space, settings, warm_start(previous, space), when, parent)

    s = settings.posterior_samples
    heldout = evaluate(model, split.heldout, library, s, x_by_image)
    prior = evaluate(prior_model(space, settings.prior, when), split.heldout, library, s, x_by_image)
    current = evaluate(previous, split.heldout, library, s) if previous is not None else None
    switch, reason = should_switch(heldout, current if current is not None else prior)

    recent_metrics: Metrics | None = None
    rsplit = recent_split(decisions, settings.recent_slice)
    if sum(len(d.members) > 1 for d in rsplit.train) >= settings.min_train_decisions:
        rmodel = _fit_model(rsplit.train, x_by_image, space, settings, model.weights, when, None)
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
        split={
            "heldout_fraction": settings.heldout_fraction,
            "salt": settings.split_salt,
            "recent_slice": settings.recent_slice,
        },
    )
    return TrainResult(model, card, heldout, recent_metrics, switch, reason)
