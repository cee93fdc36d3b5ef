"""The model card written beside every trained version (models/<version>/card.json)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from core.rank.evaluate import Metrics
from core.rank.model import RankModel


def model_card(
    model: RankModel,
    *,
    data_ts: float | None,
    counts: Mapping[str, int],
    metrics: Mapping[str, Metrics | None],
    switch: tuple[bool, str],
    split: Mapping[str, Any],
    revert_to_prior: bool = False,
) -> dict[str, Any]:
    """A JSON-ready description of one trained version.

    `data_ts`: time of the newest decision used (unix seconds); `counts`: how much data went where;
    `metrics`: named held-out evaluations (this model, the prior, the model it may replace).
    """
    weights = sorted(zip(model.space.names, model.weights.tolist(), strict=True), key=lambda t: -abs(t[1]))
    return {
        "version": model.version,
        "parent": model.parent,
        "source": model.source,
        "created": model.created,
        "data_timestamp": None if data_ts is None else datetime.fromtimestamp(data_ts, UTC).isoformat(),
        "counts": dict(counts),
        "features": {
            "version": model.space.version,
            "names": list(model.space.names),
            "embedding_components": 0 if model.space.pca_basis is None else int(model.space.pca_basis.shape[0]),
            "notes": list(model.space.notes),
        },
        "largest_weights": [{"feature": n, "weight": round(w, 4)} for n, w in weights[:10]],
        "fit": dict(model.info),
        "heldout": {k: (None if m is None else m.to_dict()) for k, m in metrics.items()},
        "split": dict(split),
        "switch": {"switch": switch[0], "reason": switch[1], "revert_to_prior": revert_to_prior},
    }
