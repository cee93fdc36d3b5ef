"""Ranking features from sidecar payloads: values, explicit missing sources, standardisation, PCA."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.rank.features import (
    BASE_FEATURES,
    FeatureSpace,
    ImageSignals,
    base_features,
    missing_sources,
    summarise_anomaly_report,
)


def _quality(sharpness: float = 100.0, brisque: float | None = 30.0) -> dict[str, float | None]:
    return {
        "sharpness": sharpness,
        "subject_sharpness": 2 * sharpness,
        "brightness": 0.7,
        "contrast": 0.25,
        "clipped_dark": 0.01,
        "clipped_bright": 0.02,
        "noise_sigma": 1.5,
        "brisque": brisque,
        "subject_fraction": 0.4,
        "subject_brightness": 0.6,
    }


def _pose(visible: int, w: int = 1000, h: int = 1000) -> dict[str, object]:
    lm = np.zeros((33, 4))
    lm[:, 0], lm[:, 1] = 500, 500
    limbs = [11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
    lm[limbs[:visible], 3] = 0.9
    return {"image_size": [w, h], "poses": [{"landmarks": lm.tolist()}]}


def _full(**over: object) -> ImageSignals:
    base: dict[str, object] = {
        "quality": _quality(),
        "face": {
            "image_size": [1000, 1000],
            "faces": [{"box": {"x": 0, "y": 0, "w": 100, "h": 100}, "score": 0.9, "keypoints": [[0, 0]] * 6}],
        },
        "hands": {"image_size": [1000, 1000], "hands": []},
        "pose": _pose(6),
        "anomaly": {
            "count": 2,
            "score_sum": 1.4,
            "score_max": 0.8,
            "uncertain": False,
            "uncertain_regions": 1,
            "parts": {"hands": 0.8, "limbs": 0.0, "feet": 0.0},
        },
        "near_duplicate": False,
        "embedding": None,
    }
    base.update(over)
    return ImageSignals(**base)  # type: ignore[arg-type]


def test_base_feature_values() -> None:
    f = base_features(_full())
    assert f["sharpness_log"] == pytest.approx(math.log1p(100))
    assert f["subject_sharpness_log"] == pytest.approx(math.log1p(200))
    assert f["contrast"] == 0.25 and f["noise"] == 1.5 and f["subject_fraction"] == 0.4
    assert f["exposure_dev"] == pytest.approx(0.2)
    assert f["clipping"] == pytest.approx(0.03)
    assert f["face_present"] == 1.0 and f["face_size"] == pytest.approx(0.1)
    assert f["hands_visible"] == 0.0
    assert f["pose_completeness"] == pytest.approx(0.5)
    assert f["anomaly_count"] == 2 and f["anomaly_score_max"] == 0.8 and f["anomaly_uncertain"] == 0.0
    assert f["near_duplicate"] == 0.0
    assert missing_sources(_full()) == ["embedding"]


def test_no_detection_is_a_value_but_no_payload_is_missing() -> None:
    nothing_found = _full(face={"image_size": [10, 10], "faces": []}, pose={"image_size": [10, 10], "poses": []})
    f = base_features(nothing_found)
    assert f["face_present"] == 0.0 and f["face_size"] == 0.0 and f["pose_completeness"] == 0.0
    absent = ImageSignals()
    assert all(v is None for v in base_features(absent).values())
    assert missing_sources(absent) == [
        "quality",
        "brisque",
        "subject",
        "face",
        "hands",
        "pose",
        "anomaly",
        "dedup",
        "embedding",
    ]
    # a single field missing (BRISQUE not installed) marks only its own source
    assert missing_sources(_full(quality=_quality(brisque=None))) == ["brisque", "embedding"]


def test_pose_landmarks_outside_the_frame_do_not_count() -> None:
    inside = base_features(_full(pose=_pose(12, 1000, 1000)))["pose_completeness"]
    outside = base_features(_full(pose=_pose(12, 400, 400)))["pose_completeness"]
    assert inside == 1.0 and outside == 0.0


def test_missing_values_are_imputed_with_the_mean_and_flagged() -> None:
    sigs = [_full(quality=_quality(sharpness=s)) for s in (10.0, 100.0, 1000.0)] + [_full(quality=None)]
    space = FeatureSpace.fit(sigs, pca_components=8, pca_min_images=2)
    x = space.transform(sigs)
    col = space.names.index
    # the three known sharpness values are standardised; the unknown one sits exactly at the mean
    assert x[:3, col("sharpness_log")].mean() == pytest.approx(0.0)
    assert x[:3, col("sharpness_log")].std() == pytest.approx(1.0)
    assert x[3, col("sharpness_log")] == 0.0
    flag = x[:, col("missing:quality")]
    assert flag[3] > 0 and np.all(flag[:3] < 0)
    # no image had an embedding: PCA is left out and the card can say why
    assert not any(n.startswith("emb_") for n in space.names)
    assert any("embedding left out" in n for n in space.notes)


def test_constant_columns_stay_at_zero() -> None:
    sigs = [_full() for _ in range(5)]
    x = FeatureSpace.fit(sigs, 0, 2).transform(sigs)
    assert np.all(x == 0.0)


def test_pca_on_the_users_embeddings() -> None:
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(64)
    direction /= np.linalg.norm(direction)
    embs = [5 * rng.standard_normal() * direction + 0.1 * rng.standard_normal(64) + 3 for _ in range(60)]
    sigs = [_full(embedding=e) for e in embs]
    space = FeatureSpace.fit(sigs, pca_components=4, pca_min_images=40)
    names = [n for n, _ in BASE_FEATURES]
    assert list(space.names[: len(names)]) == names
    assert space.names[len(names) : len(names) + 4] == ("emb_1", "emb_2", "emb_3", "emb_4")
    assert "missing:embedding" in space.names
    assert space.pca_basis is not None
    # the first component is the planted direction (sign fixed, so refits agree)
    assert abs(space.pca_basis[0] @ direction) > 0.95
    again = FeatureSpace.fit(sigs, pca_components=4, pca_min_images=40)
    assert again.pca_basis is not None and np.array_equal(again.pca_basis, space.pca_basis)
    x = space.transform(sigs)
    assert x[:, space.names.index("emb_1")].std() == pytest.approx(1.0)
    # an image without an embedding gets the mean and its flag
    row = space.transform([_full()])[0]
    assert row[space.names.index("emb_1")] == 0.0 and row[space.names.index("missing:embedding")] > 0


def test_space_round_trips_through_a_dict() -> None:
    rng = np.random.default_rng(1)
    sigs = [_full(embedding=rng.standard_normal(16)) for _ in range(12)]
    space = FeatureSpace.fit(sigs, 3, 10)
    back = FeatureSpace.from_dict(space.to_dict())
    assert np.array_equal(back.transform(sigs), space.transform(sigs))
    bad = space.to_dict() | {"means": [0.0]}
    with pytest.raises(ValueError, match="do not match"):
        FeatureSpace.from_dict(bad)


def test_anomaly_report_summary_names_the_parts() -> None:
    def rec(tag: str, source: str, score: float, **ev: object) -> dict[str, object]:
        box = {"x": 0, "y": 0, "w": 1, "h": 1}
        return {"tag": tag, "box": box, "score": score, "evidence": {"measurement": "m", **ev}, "source": source}

    report = {
        "version": 1,
        "image_size": [100, 100],
        "anomalies": [
            rec("extra_fingers", "hand:0", 0.9, side="left"),
            rec("long_hand", "hand:0", 0.6, side="left"),
            rec("long_foot", "pose:0:right_foot", 0.7, side="right"),
            rec("extra_fingers", "hand:1", 0.5),
        ],
        "uncertain_regions": [],
        "uncertain": True,
    }
    s = summarise_anomaly_report(report)
    assert s["count"] == 4 and s["uncertain"] is True
    assert s["score_sum"] == pytest.approx(2.7) and s["score_max"] == 0.9
    assert s["by_part"] == {"left hand": 2, "right foot": 1, "hand": 1}
    clean = summarise_anomaly_report({"anomalies": [], "uncertain": False})
    assert clean == {
        "count": 0,
        "score_sum": 0.0,
        "score_max": 0.0,
        "uncertain": False,
        "uncertain_regions": 0,
        "by_part": {},
        "parts": {"hands": 0.0, "limbs": 0.0, "feet": 0.0},
    }
    assert s["parts"] == {"hands": 0.9, "limbs": 0.0, "feet": 0.7}
    f = base_features(_full(anomaly=s))
    assert f["anomaly_count"] == 4 and f["anomaly_uncertain"] == 1.0
