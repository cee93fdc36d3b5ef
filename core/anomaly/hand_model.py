"""A learned per-hand model: which hands the user removes, learned from one vector per hand.

Each hand box of a decided image becomes an example when the decision says something about it
(`hand_labels`): kept when the image was approved or the crop kept the hand, removed when the crop
cut it away or the image was rejected with a hand tag and shows exactly one hand. The caller gives
each hand a vector (the `regions` descriptors, which need no model weights, with the hand's CLIP
crop embedding appended when one exists, or a CLIP embedding alone; the representation's id
travels with the model) and fits:

    [z-score per column for descriptors] -> centre -> PCA (scores scaled to unit variance)
    -> L2-regularised, class-balanced logistic regression

It is a gate-protected model: `fit_hand_model` only returns one once its grouped cross-validated
AUC (folds never split a decided set, so near-identical siblings cannot leak) clears
`HandModelSettings.min_cv_auc`; otherwise it raises and there is no model. Its probabilities route
hands to the user as uncertain; they never remove a hand on their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.anomaly.calibration import Role, box_inside_fraction
from core.anomaly.settings import CalibrationSettings, HandModelSettings
from core.errors import BestshotError
from core.jsonfile import read_json_object, write_json_atomic
from core.optim import logistic_map, sigmoid
from core.sidecar_types import Box

HAND_TAGS = ("extra_fingers", "warped_wrist", "long_hand", "malformed_phone_grip")
FORMAT = 1


class HandModelError(BestshotError):
    """Too little or too weak data to fit a hand model, or a model file that does not hold one."""

    kind = "hand_model"


def hand_labels(
    boxes: Sequence[Box], role: Role, crop_box: Box | None, tags: Iterable[str], s: CalibrationSettings
) -> list[bool | None]:
    """Per hand box: True (the user removed it), False (kept it) or None (the decision cannot tell)."""
    if role == "approved":
        return [False] * len(boxes)
    if role == "cropped" and crop_box is not None:
        out: list[bool | None] = []
        for b in boxes:
            inside = box_inside_fraction(b, crop_box)
            out.append(True if inside <= s.cut_inside_max else False if inside >= s.kept_inside_min else None)
        return out
    # With several hands a hand tag does not say which one was wrong.
    if role == "rejected" and len(boxes) == 1 and not set(HAND_TAGS).isdisjoint(tags):
        return [True]
    return [None] * len(boxes)


@dataclass(frozen=True)
class HandExample:
    group: str  # the decided set: cross-validation folds never split one
    embedding: np.ndarray
    label: bool  # True: the user removed this hand


@dataclass(frozen=True)
class HandModel:
    version: str
    embedding_model: str
    dim: int
    mean: np.ndarray  # (dim,)
    components: np.ndarray  # (k, dim), scaled so training scores have unit variance
    weights: np.ndarray  # (k,)
    bias: float
    cv_auc: float
    positives: int
    negatives: int
    trained_at: str

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """P(the user removes this hand) per row of `embeddings` (n, dim)."""
        x = np.asarray(embeddings, dtype=np.float64)
        if x.size == 0:
            return np.zeros(0)
        if x.ndim != 2 or x.shape[1] != self.dim:
            got = x.shape[-1] if x.ndim else "none"
            raise ValueError(f"embeddings of dim {got} (shape {x.shape}), the model expects dim {self.dim}")
        return sigmoid((x - self.mean) @ self.components.T @ self.weights + self.bias)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "embedding_model": self.embedding_model,
            "dim": self.dim,
            "mean": self.mean.tolist(),
            "components": self.components.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "cv_auc": self.cv_auc,
            "positives": self.positives,
            "negatives": self.negatives,
            "trained_at": self.trained_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Path | None = None) -> HandModel:
        try:
            if d.get("format") != FORMAT:
                raise ValueError(f"format {d.get('format')!r}, this version reads {FORMAT}")
            dim = int(d["dim"])
            mean = np.asarray(d["mean"], dtype=np.float64)
            comps = np.asarray(d["components"], dtype=np.float64)
            w = np.asarray(d["weights"], dtype=np.float64)
            bias = float(d["bias"])
            if dim < 1 or mean.shape != (dim,) or comps.ndim != 2 or comps.shape[1] != dim or comps.shape[0] < 1:
                raise ValueError(f"mean {mean.shape} / components {comps.shape} do not match dim {dim}")
            if w.shape != (comps.shape[0],):
                raise ValueError(f"weights {w.shape} do not match {comps.shape[0]} components")
            if not all(np.isfinite(a).all() for a in (mean, comps, w, np.array(bias))):
                raise ValueError("non-finite parameters")
            return cls(
                str(d["version"]),
                str(d["embedding_model"]),
                dim,
                mean,
                comps,
                w,
                bias,
                float(d["cv_auc"]),
                int(d["positives"]),
                int(d["negatives"]),
                str(d["trained_at"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise HandModelError(path, f"not a valid hand model: {e}") from e

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> HandModel:
        return cls.from_dict(read_json_object(path, "hand model", HandModelError), path)


def assign_folds(groups: Sequence[str], folds: int) -> np.ndarray:
    """Fold index per example: sorted group names dealt round-robin, so a group stays in one fold."""
    names = sorted(set(groups))
    n = min(folds, len(names))
    fold_of = {g: i % n for i, g in enumerate(names)}
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC: P(a positive scores above a negative), ties counting half."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs both classes")
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inv]  # average 1-based rank within each tie
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _pca(x: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (k, dim) components scaled so the training scores have unit variance: then `l2`
    means the same whatever the embedding's scale, and probabilities are not shrunk towards 0.5."""
    n, dim = x.shape
    mean = x.mean(axis=0)
    _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
    k = min(k_max, n - 1, dim)
    sv, vt = sv[:k], vt[:k]
    keep = sv > 1e-9 * (sv[0] if len(sv) else 0.0)
    if not keep.any():
        raise HandModelError(None, "the hand embeddings do not vary")
    return mean, vt[keep] * (np.sqrt(n - 1) / sv[keep])[:, None]


def _balanced(y: np.ndarray) -> np.ndarray:
    """Sample weights giving each class half the total weight, so the majority class does not dominate."""
    n, pos = len(y), int(y.sum())
    out: np.ndarray = np.where(y, n / (2 * pos), n / (2 * (n - pos)))
    return out


def _fit(
    x: np.ndarray, y: np.ndarray, s: HandModelSettings, standardise: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """`standardise`: z-score each column before the PCA (region descriptors mix angles, ratios and
    gradient histograms on unrelated scales); the scaling is folded into the components, so the
    model applies to raw vectors like any other."""
    sd = np.ones(x.shape[1])
    if standardise:
        raw = x.std(axis=0)
        sd = np.where(raw > 1e-9, raw, 1.0)
    mean, comps = _pca(x / sd, s.pca_components)
    comps = comps / sd
    mean = mean * sd
    w, b = logistic_map((x - mean) @ comps.T, y, s.l2, bias_l2=1e-9, weights=_balanced(y))
    return mean, comps, w, b


def standardised(representation: str) -> bool:
    """Representations built on region descriptors (core.anomaly.regions) are z-scored per column;
    a CLIP embedding alone is used as it comes."""
    return representation.startswith("regions-")


def held_out_probabilities(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], s: HandModelSettings, standardise: bool = False
) -> np.ndarray:
    """Out-of-fold P(removed) per example over grouped folds (NaN where a fold's training part had
    one class); PCA and fit redone per fold."""
    fold = assign_folds(groups, s.folds)
    oof = np.full(len(y), np.nan)
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        if y[train].all() or not y[train].any():
            continue  # a training part with one class cannot be fitted
        mean, comps, w, b = _fit(x[train], y[train], s, standardise)
        oof[test] = sigmoid((x[test] - mean) @ comps.T @ w + b)
    return oof


def cross_validated_auc(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], s: HandModelSettings, standardise: bool = False
) -> float:
    """AUC of out-of-fold predictions pooled over grouped folds."""
    oof = held_out_probabilities(x, y, groups, s, standardise)
    seen = ~np.isnan(oof)
    if not (y[seen].any() and not y[seen].all()):
        raise HandModelError(None, "cross-validation left no held-out predictions of both classes")
    return roc_auc(oof[seen], y[seen])


def _version(mean: np.ndarray, comps: np.ndarray, w: np.ndarray, b: float, embedding_model: str) -> str:
    h = hashlib.sha256()
    for a in (w, comps, np.array([b]), mean):
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    h.update(embedding_model.encode())
    return "hand-" + h.hexdigest()[:12]


def fit_hand_model(
    examples: Sequence[HandExample], s: HandModelSettings, embedding_model: str, when: datetime
) -> HandModel:
    """The hand model, or HandModelError when data is too scarce or the held-out AUC too low."""
    dims = {np.asarray(e.embedding).reshape(-1).shape[0] for e in examples}
    if len(dims) > 1:
        raise HandModelError(None, f"hand embeddings have different dimensions {sorted(dims)}")
    y = np.array([bool(e.label) for e in examples], dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos < s.min_positives:
        raise HandModelError(None, f"{pos} removed hands (positives), at least {s.min_positives} needed")
    if neg < s.min_negatives:
        raise HandModelError(None, f"{neg} kept hands (negatives), at least {s.min_negatives} needed")
    x = np.stack([np.asarray(e.embedding, dtype=np.float64).reshape(-1) for e in examples])
    if not np.isfinite(x).all():
        raise HandModelError(None, "hand embeddings contain non-finite values")
    z = standardised(embedding_model)
    auc = cross_validated_auc(x, y, [e.group for e in examples], s, z)
    if auc < s.min_cv_auc:
        raise HandModelError(None, f"cross-validated AUC {auc:.3f} is below the required {s.min_cv_auc:.3f}")
    mean, comps, w, b = _fit(x, y, s, z)
    return HandModel(
        _version(mean, comps, w, b, embedding_model),
        embedding_model,
        x.shape[1],
        mean,
        comps,
        w,
        b,
        auc,
        pos,
        neg,
        when.astimezone(UTC).isoformat(timespec="seconds"),
    )
