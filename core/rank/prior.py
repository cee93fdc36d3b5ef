"""The prior ranking used before any decision exists.

Utility = sum of `rank.prior` weights times the standardised features (z-scores over the user's
own library, so "sharper" means sharper than this user's usual image, whatever the sharpness
unit). By default anomalies count most, then sharpness and BRISQUE, then exposure, clipping and
noise, then face, pose and subject size as tie-breakers; embedding directions and
missing-source indicators weigh nothing, because without decisions nothing says which look
the user likes. The covariance is zero: the prior says nothing about its own uncertainty, so its
proposals are routed on margin alone and say `source: "prior"`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from core.rank.features import FeatureSpace
from core.rank.model import RankModel, make_version
from core.rank.settings import PriorWeights


def prior_weights(space: FeatureSpace, weights: PriorWeights) -> np.ndarray:
    table = weights.model_dump()
    return np.array([float(table.get(name, 0.0)) for name in space.names])


def prior_model(space: FeatureSpace, weights: PriorWeights, when: datetime | None = None) -> RankModel:
    when = when or datetime.now(UTC)
    w = prior_weights(space, weights)
    return RankModel(
        space=space,
        weights=w,
        cov=np.zeros((space.dim, space.dim)),
        source="prior",
        version=make_version("prior", w, space, when),
        created=when.astimezone(UTC).isoformat(),
        info={"weights": weights.model_dump()},
        temperature=weights.temperature,
    )
