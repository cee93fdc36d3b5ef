"""Per-image ranking features from sidecar payloads, and the fitted space that standardises them.

Each feature belongs to a *source* (an extractor or an upstream analysis). When a source is absent
for an image (extractor unavailable, failed, not run yet), its features are imputed with the
library mean and the source's `missing:<source>` indicator is 1: the model sees the gap and the
proposal can say so, nothing is silently zero.

Inputs, as stored by the other parts:
- `quality` (core/extractors/quality.py): "sharpness", "subject_sharpness", "brightness" (0..1),
  "contrast", "clipped_dark", "clipped_bright" (fractions), "noise_sigma", "subject_fraction",
  "brisque" (lower is better; null when undefined)
- `face` / `hands` / `pose`: payloads parsed with core.sidecar_types
- `anomaly`: {"count": int, "score_sum": float, "score_max": float, "uncertain": bool,
  "uncertain_regions": int, "parts": {"hands": score, "limbs": ..., "feet": ...},
  optional "by_part": {"left hand": 2, ...}}; `summarise_anomaly_report` builds it from the
  stored anomaly report (sidecar/anomalies/<image>.json) without depending on its classes.
  Older summaries without "uncertain_regions"/"parts" leave those features unknown.
- `near_duplicate`: bool from dedup; `embedding`: the CLIP vector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.anomaly.parts import part_scores
from core.sidecar_types import faces_from_payload, poses_from_payload

FEATURES_VERSION = 2  # 2: exposed anatomy (wrists, knees, ankles, people), per-part anomaly scores

# (name, source) in column order; embedding components and indicators are appended after these.
BASE_FEATURES: tuple[tuple[str, str], ...] = (
    ("sharpness_log", "quality"),
    ("contrast", "quality"),
    ("exposure_dev", "quality"),
    ("clipping", "quality"),
    ("noise", "quality"),
    ("brisque", "brisque"),
    ("subject_fraction", "subject"),
    ("subject_sharpness_log", "subject"),
    ("face_present", "face"),
    ("face_size", "face"),
    ("hands_visible", "hands"),
    ("pose_completeness", "pose"),
    # How much anatomy is on show: every visible joint is one more place for a render to go wrong.
    ("wrists_visible", "pose"),
    ("knees_visible", "pose"),
    ("ankles_visible", "pose"),
    ("wrists_without_hands", "pose"),
    ("people", "face"),
    ("anomaly_count", "anomaly"),
    ("anomaly_score_sum", "anomaly"),
    ("anomaly_score_max", "anomaly"),
    ("anomaly_uncertain", "anomaly"),
    ("anomaly_uncertain_regions", "anomaly"),
    ("anomaly_hands", "anomaly"),
    ("anomaly_limbs", "anomaly"),
    ("anomaly_feet", "anomaly"),
    ("near_duplicate", "dedup"),
)
SOURCES: tuple[str, ...] = (*dict.fromkeys(s for _, s in BASE_FEATURES), "embedding")

# Body landmarks whose visibility makes a pose "complete" (shoulders to ankles, both sides).
_LIMB_POINTS = (11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
_VISIBLE = 0.5


@dataclass(frozen=True)
class ImageSignals:
    """Everything known about one image; None means that source is missing for it."""

    quality: Mapping[str, Any] | None = None
    face: Mapping[str, Any] | None = None
    hands: Mapping[str, Any] | None = None
    pose: Mapping[str, Any] | None = None
    anomaly: Mapping[str, Any] | None = None
    near_duplicate: bool | None = None
    embedding: np.ndarray | None = None


def _num(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    if v is None or isinstance(v, bool):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _image_area(payload: Mapping[str, Any]) -> float | None:
    size = payload.get("image_size")
    if not size or len(size) != 2 or size[0] <= 0 or size[1] <= 0:
        return None
    return float(size[0]) * float(size[1])


def _log_nonneg(v: float | None) -> float | None:
    # sharpness (Laplacian energy) spans orders of magnitude between soft and crisp renders
    return None if v is None else math.log1p(max(v, 0.0))


def _quality(q: Mapping[str, Any] | None, out: dict[str, float | None]) -> None:
    if q is None:
        return
    out["sharpness_log"] = _log_nonneg(_num(q, "sharpness"))
    out["contrast"] = _num(q, "contrast")
    e = _num(q, "brightness")
    out["exposure_dev"] = abs(e - 0.5) if e is not None else None
    lo, hi = _num(q, "clipped_dark"), _num(q, "clipped_bright")
    out["clipping"] = lo + hi if lo is not None and hi is not None else None
    out["noise"] = _num(q, "noise_sigma")
    out["brisque"] = _num(q, "brisque")
    out["subject_fraction"] = _num(q, "subject_fraction")
    out["subject_sharpness_log"] = _log_nonneg(_num(q, "subject_sharpness"))


def _face(payload: Mapping[str, Any] | None, out: dict[str, float | None]) -> None:
    if payload is None:
        return
    faces = faces_from_payload(dict(payload))
    out["face_present"] = 1.0 if faces else 0.0
    area = _image_area(payload)
    if not faces:
        out["face_size"] = 0.0
    elif area:
        # sqrt so the feature is a length ratio: a face twice as wide reads twice, not four times
        out["face_size"] = math.sqrt(max(f.box.w * f.box.h for f in faces) / area)


def _pose_completeness(payload: Mapping[str, Any]) -> float | None:
    poses = poses_from_payload(dict(payload))
    if not poses:
        return 0.0
    size = payload.get("image_size")
    w, h = (float(size[0]), float(size[1])) if size and len(size) == 2 else (math.inf, math.inf)

    def complete(lm: np.ndarray) -> float:
        pts = lm[list(_LIMB_POINTS)]
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        return float(np.mean((pts[:, 3] >= _VISIBLE) & inside))

    return max(complete(p.landmarks) for p in poses)


_WRISTS, _KNEES, _ANKLES = (15, 16), (25, 26), (27, 28)


def _visible_joints(payload: Mapping[str, Any], idx: tuple[int, ...]) -> float:
    """Visible landmarks of these indices inside the frame, summed over every detected person."""
    size = payload.get("image_size")
    w, h = (float(size[0]), float(size[1])) if size and len(size) == 2 else (math.inf, math.inf)
    n = 0
    for p in poses_from_payload(dict(payload)):
        pts = p.landmarks[list(idx)]
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        n += int(np.sum((pts[:, 3] >= _VISIBLE) & inside))
    return float(n)


def _exposure(sig: ImageSignals, out: dict[str, float | None]) -> None:
    if sig.pose is not None:
        wrists = _visible_joints(sig.pose, _WRISTS)
        out["wrists_visible"] = wrists
        out["knees_visible"] = _visible_joints(sig.pose, _KNEES)
        out["ankles_visible"] = _visible_joints(sig.pose, _ANKLES)
        if sig.hands is not None:
            out["wrists_without_hands"] = max(wrists - float(len(sig.hands.get("hands", []))), 0.0)
    if sig.face is not None:
        poses = len(sig.pose.get("poses", [])) if sig.pose is not None else 0
        out["people"] = float(max(len(sig.face.get("faces", [])), poses))


def _anomaly(a: Mapping[str, Any] | None, out: dict[str, float | None]) -> None:
    if a is None:
        return
    out["anomaly_count"] = _num(a, "count")
    out["anomaly_score_sum"] = _num(a, "score_sum")
    out["anomaly_score_max"] = _num(a, "score_max")
    unc = a.get("uncertain")
    out["anomaly_uncertain"] = None if unc is None else float(bool(unc))
    out["anomaly_uncertain_regions"] = _num(a, "uncertain_regions")
    parts = a.get("parts") or {}
    for part in ("hands", "limbs", "feet"):
        v = parts.get(part)
        out[f"anomaly_{part}"] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


# Body part of each anomaly tag, for reasons when the record's source does not name one.
_TAG_PART = {
    "extra_fingers": "hand", "warped_wrist": "hand", "long_hand": "hand", "malformed_phone_grip": "hand",
    "long_foot": "foot", "wrong_toes_count": "foot", "foreshortened_upper_arm": "arm",
    "limb_misaligned": "limb",
}  # fmt: skip


def _part(a: Mapping[str, Any]) -> str:
    """Body part an anomaly record concerns, in words: "left hand", "right foot", "hand"."""
    src = str(a.get("source", ""))
    if src.startswith("pose:") and src.count(":") >= 2:  # "pose:0:left_foot"
        return src.split(":", 2)[2].replace("_", " ")
    kind = "hand" if src.startswith("hand:") else _TAG_PART.get(str(a.get("tag", "")), "body")
    ev = a.get("evidence") or {}
    side = ev.get("side") or ev.get("longer_side")
    return f"{side} {kind}" if side in ("left", "right") else kind


def summarise_anomaly_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The ranking's anomaly summary from a stored anomaly report dict (`AnomalyReport.to_dict()`)."""
    found = list(report.get("anomalies", []))
    scores = [float(a.get("score", 0.0)) for a in found]
    parts: dict[str, int] = {}
    for a in found:
        parts[_part(a)] = parts.get(_part(a), 0) + 1
    return {
        "count": len(found),
        "score_sum": float(sum(scores)),
        "score_max": float(max(scores, default=0.0)),
        "uncertain": bool(report.get("uncertain", False)),
        "uncertain_regions": len(report.get("uncertain_regions", []) or []),
        "by_part": parts,
        # image-level evidence per part (core.anomaly.parts, the one place it is computed)
        "parts": {p: round(v.score, 4) for p, v in part_scores(report).items()},
    }


def base_features(sig: ImageSignals) -> dict[str, float | None]:
    """Raw (unstandardised) base features; None where the value is unknown."""
    out: dict[str, float | None] = {name: None for name, _ in BASE_FEATURES}
    _quality(sig.quality, out)
    _face(sig.face, out)
    if sig.hands is not None:
        out["hands_visible"] = float(min(len(sig.hands.get("hands", [])), 2))
    if sig.pose is not None:
        out["pose_completeness"] = _pose_completeness(sig.pose)
    _exposure(sig, out)
    _anomaly(sig.anomaly, out)
    if sig.near_duplicate is not None:
        out["near_duplicate"] = float(sig.near_duplicate)
    return out


def missing_sources(sig: ImageSignals, feats: Mapping[str, float | None] | None = None) -> list[str]:
    """Sources with at least one unknown value for this image (embedding included)."""
    feats = base_features(sig) if feats is None else feats
    missing = [s for s in SOURCES[:-1] if any(feats[n] is None for n, src in BASE_FEATURES if src == s)]
    if sig.embedding is None:
        missing.append("embedding")
    return missing


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


@dataclass(frozen=True)
class FeatureSpace:
    """Column names, standardisation and PCA basis, fitted on the user's library (no labels used)."""

    names: tuple[str, ...]
    means: np.ndarray
    stds: np.ndarray
    pca_mean: np.ndarray | None = None  # (D,) mean of unit embeddings
    pca_basis: np.ndarray | None = None  # (k, D) rows are principal directions
    version: int = FEATURES_VERSION
    notes: tuple[str, ...] = field(default=())

    @property
    def dim(self) -> int:
        return len(self.names)

    @classmethod
    def fit(cls, signals: Sequence[ImageSignals], pca_components: int, pca_min_images: int) -> FeatureSpace:
        return cls.fit_transform(signals, pca_components, pca_min_images)[0]

    @classmethod
    def fit_transform(
        cls, signals: Sequence[ImageSignals], pca_components: int, pca_min_images: int
    ) -> tuple[FeatureSpace, np.ndarray]:
        """The fitted space and the standardised features of `signals` (parsed once)."""
        notes: list[str] = []
        embs = [_unit(s.embedding) for s in signals if s.embedding is not None]
        pca_mean: np.ndarray | None = None
        basis: np.ndarray | None = None
        if pca_components > 0 and len(embs) >= pca_min_images:
            e = np.stack(embs)
            pca_mean = e.mean(axis=0)
            k = min(pca_components, len(embs) - 1, e.shape[1])
            vals, vecs = np.linalg.eigh(np.cov(e - pca_mean, rowvar=False))
            basis = vecs[:, np.argsort(vals)[::-1][:k]].T
            # eigenvector signs are arbitrary; fix them so refits of similar data agree
            flip = np.sign(basis[np.arange(k), np.argmax(np.abs(basis), axis=1)])
            basis = basis * flip[:, None]
        elif pca_components > 0:
            notes.append(f"embedding left out: {len(embs)} images have embeddings, PCA needs {pca_min_images}")
        base_names = [n for n, _ in BASE_FEATURES]
        emb_names = [f"emb_{i + 1}" for i in range(0 if basis is None else basis.shape[0])]
        sources = [s for s in SOURCES if s != "embedding" or basis is not None]
        names = tuple(base_names + emb_names + [f"missing:{s}" for s in sources])
        proto = cls(names, np.zeros(len(names)), np.ones(len(names)), pca_mean, basis, notes=tuple(notes))
        raw = proto.raw_matrix(signals)
        means = np.zeros(len(names))
        stds = np.ones(len(names))
        for j in range(len(names)):
            col = raw[:, j][~np.isnan(raw[:, j])]
            if col.size:
                means[j] = col.mean()
                sd = col.std()
                # a constant column carries no information; scale 1 keeps it at z = 0
                stds[j] = sd if sd > 1e-12 else 1.0
            elif not names[j].startswith("missing:"):
                notes.append(f"{names[j]}: no image has it, imputed as 0")
        space = cls(names, means, stds, pca_mean, basis, FEATURES_VERSION, tuple(notes))
        return space, space.standardise(raw)

    def raw_matrix(self, signals: Sequence[ImageSignals]) -> np.ndarray:
        """(n, dim) unstandardised values with NaN where unknown (indicators never NaN)."""
        out = np.full((len(signals), self.dim), np.nan)
        col = {n: j for j, n in enumerate(self.names)}
        for i, sig in enumerate(signals):
            feats = base_features(sig)
            for name, v in feats.items():
                # a space fitted by an older version lacks newer features: they are not its columns
                if v is not None and name in col:
                    out[i, col[name]] = v
            gaps = set(missing_sources(sig, feats))
            for s in SOURCES:
                if f"missing:{s}" in col:
                    out[i, col[f"missing:{s}"]] = float(s in gaps)
            if self.pca_basis is not None and sig.embedding is not None:
                u = _unit(sig.embedding)
                if self.pca_mean is not None and u.shape == self.pca_mean.shape:
                    start = col["emb_1"]
                    out[i, start : start + self.pca_basis.shape[0]] = self.pca_basis @ (u - self.pca_mean)
        return out

    def transform(self, signals: Sequence[ImageSignals]) -> np.ndarray:
        """(n, dim) standardised features; unknown values imputed with the mean (z = 0)."""
        return self.standardise(self.raw_matrix(signals))

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.means) / self.stds
        out: np.ndarray = np.where(np.isnan(z), 0.0, z)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "names": list(self.names),
            "means": self.means.tolist(),
            "stds": self.stds.tolist(),
            "pca_mean": None if self.pca_mean is None else self.pca_mean.tolist(),
            "pca_basis": None if self.pca_basis is None else self.pca_basis.tolist(),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpace:
        names = tuple(str(n) for n in d["names"])
        means = np.asarray(d["means"], dtype=np.float64)
        stds = np.asarray(d["stds"], dtype=np.float64)
        if means.shape != (len(names),) or stds.shape != (len(names),):
            raise ValueError("feature means/stds do not match the feature names")
        pm = None if d.get("pca_mean") is None else np.asarray(d["pca_mean"], dtype=np.float64)
        pb = None if d.get("pca_basis") is None else np.asarray(d["pca_basis"], dtype=np.float64)
        if (pm is None) != (pb is None) or (pb is not None and pm is not None and pb.shape[1:] != pm.shape):
            raise ValueError("PCA mean and basis are inconsistent")
        return cls(names, means, stds, pm, pb, int(d["version"]), tuple(str(n) for n in d.get("notes", [])))
