"""Part evidence (core.anomaly.parts): the fitted model that ships, its fitting rules, and the
`parts` field that reaches the stored anomaly report through a real `bestshot scan`."""

from __future__ import annotations

import json
import shutil
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.anomaly.model import AnomalyReport
from core.anomaly.parts import FEATURES, PARTS, PartsModel, part_features, part_scores, shipped_parts_model
from core.anomaly.parts_fit import base_rate_auc, fit_with_selection, youden_threshold
from core.anomaly.settings import AnomalySettings
from core.anomaly.world import hand_world_from_payload
from core.crop.from_sidecars import anomaly_report
from core.imaging import load
from core.sidecar_types import POSE, Pose, faces_from_payload, hands_from_payload, poses_from_payload
from tests.helpers import bestshot, write_config

HAND_PLAUSIBILITY = (
    "hand_mean_low_score",
    "hands_per_person",
    "handedness_mismatch",
    "hand_over_forearm",
    "hand_over_face",
    "world_hyperextension",
    "world_proportions",
    "world_crossings",
)


def test_shipped_model_has_every_part_with_a_fitted_threshold_and_a_model_card() -> None:
    model = shipped_parts_model()
    assert set(model.parts) == set(PARTS)
    for m in model.parts.values():
        assert m.features and set(m.features) <= set(FEATURES)
        assert 0.0 < m.threshold < 1.0
    card = resources.files("core").joinpath("anomaly/parts_model.md").read_text(encoding="utf-8")
    assert model.version in card and "nested leave-one-prompt-out AUC" in card
    doc = json.loads(resources.files("core").joinpath("anomaly/parts_model.json").read_text(encoding="utf-8"))
    assert set(doc["held_out"]) == set(PARTS)


def test_selection_keeps_the_signal_and_drops_noise_on_held_out_groups() -> None:
    rng = np.random.default_rng(3)
    groups = [f"prompt{i % 5}" for i in range(200)]
    signal = rng.normal(size=200)
    noise = rng.normal(size=(200, 3))
    y = (signal + 0.7 * rng.normal(size=200)) > 0
    x = np.column_stack([signal, noise])
    fit = fit_with_selection(x, y, groups, ["signal", "n1", "n2", "n3"], l2s=(1.0,))
    assert "signal" in fit.model.features and fit.model.weights[fit.model.features.index("signal")] > 0
    assert len(fit.model.features) < 4 and {d for d, _ in fit.dropped} <= {"n1", "n2", "n3"}
    assert fit.nested_auc > 0.75 and all("signal" in k for k in fit.nested_kept.values())
    # With no signal at all the honest (nested) figure stays near chance.
    shuffled = fit_with_selection(noise, y, groups, ["n1", "n2", "n3"], l2s=(1.0,))
    assert shuffled.nested_auc < 0.65


def test_single_joint_exposure_counts_every_person_inside_the_frame() -> None:
    def person(visible: tuple[str, ...], x: float = 50.0) -> Pose:
        lm = np.zeros((33, 4))
        lm[:, :2] = (x, 50.0)
        for name in visible:
            lm[POSE[name], 3] = 0.9
        return Pose(lm)

    poses = [
        person(("left_knee", "right_knee", "left_ankle", "left_elbow")),
        person(("right_knee", "right_ankle")),
        person(("left_knee", "left_ankle"), x=150.0),  # outside the 100 px frame: not on show
    ]
    f = part_features([], poses, [], anomaly_report_empty(), None, AnomalySettings())
    assert f["visible_knees"] == pytest.approx(np.log1p(3))
    assert f["visible_ankles"] == pytest.approx(np.log1p(2))
    assert f["visible_elbows"] == pytest.approx(np.log1p(1))
    assert {"visible_knees", "visible_ankles", "visible_elbows"} <= set(FEATURES)


def test_the_intercept_only_model_scores_below_chance_when_prompt_base_rates_differ() -> None:
    # Leaving a prompt out moves the training base rate against it: the pooled figure's handicap.
    groups = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    y = np.array([True] * 8 + [False] * 2 + [True] * 5 + [False] * 5 + [True] * 2 + [False] * 8)
    assert base_rate_auc(y, groups) < 0.5
    assert base_rate_auc(y, ["a"] * 30) == pytest.approx(0.5)


def test_youden_threshold_separates_where_it_can() -> None:
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    y = np.array([False, False, False, True, True, True])
    t = youden_threshold(p, y)
    assert 0.3 < t <= 0.6


@pytest.mark.slow
@pytest.mark.shared_data
def test_scan_stores_part_scores_computed_from_the_stored_detections(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    sources = (
        sorted((shared_data / "ai_people_flux").glob("*.png"))[:1]
        + sorted((shared_data / "ai_portraits_hands" / "image").glob("*.png"))[:1]
    )
    for p in sources:
        (root / "inbox" / p.stem).mkdir(parents=True)
        shutil.copy(p, root / "inbox" / p.stem / p.name)
    enabled = ["phash", "hands", "pose", "regions", "face", "saliency", "quality", "anomalies", "crop"]
    write_config(root, {"extractors": {"device": "cpu", "enabled": enabled}})
    bestshot("scan", root=root, timeout=600)
    model = shipped_parts_model()
    # The shipped hands model reads some of the hands' plausibility (core.anomaly.plausibility).
    assert set(model.parts["hands"].features) & set(HAND_PLAUSIBILITY), model.parts["hands"].features
    flagged: dict[str, list[str]] = {}
    hands_seen = 0
    for p in sources:
        sha = load(p).sha256
        stored = json.loads((root / "sidecar" / "anomalies" / f"{sha}.json").read_text())
        report = AnomalyReport.from_dict(stored)
        assert set(report.parts) == set(PARTS), stored.get("parts")
        hands_payload = _payload(root, sha, "hands")
        hands = hands_from_payload(hands_payload)
        poses = poses_from_payload(_payload(root, sha, "pose"))
        faces = faces_from_payload(_payload(root, sha, "face"))
        # The scores follow from the image's detections and its report through the shipped model.
        feats = part_features(hands, poses, faces, report, hand_world_from_payload(hands_payload), AnomalySettings())
        expected = model.score(feats)
        for part in PARTS:
            assert report.parts[part]["score"] == pytest.approx(expected[part]["score"], abs=1e-4)
            assert report.parts[part]["flag"] == expected[part]["flag"]
        assert report.clean == (not report.anomalies and not report.uncertain and not report.flagged_parts())
        if report.flagged_parts():
            assert not report.clean and any(r.startswith("part evidence") for r in report.reasons)
        flagged[p.name] = report.flagged_parts()
        if hands:
            # The hands' own plausibility reaches the stored score: without it the score differs.
            assert feats["world_proportions"] > 0 and feats["hand_mean_low_score"] > 0, feats
            plain = {**feats, **dict.fromkeys(HAND_PLAUSIBILITY, 0.0)}
            assert model.score(plain)["hands"]["score"] != pytest.approx(report.parts["hands"]["score"], abs=1e-3)
            hands_seen += 1
    assert hands_seen >= 1
    # The Flux crowd image (anatomy errors, several people) is flagged by its part evidence.
    assert flagged[sources[0].name], flagged


def _payload(root: Path, sha: str, extractor: str) -> dict[str, Any]:
    con = sqlite3.connect(root / "bestshot.sqlite")
    try:
        row = con.execute(
            "SELECT payload FROM sidecars WHERE sha256 = ? AND extractor = ? ORDER BY version DESC", (sha, extractor)
        ).fetchone()
    finally:
        con.close()
    out: dict[str, Any] = json.loads(row[0])
    return out


def test_a_flagged_part_makes_a_report_unclean() -> None:
    model = shipped_parts_model()
    base = anomaly_report_empty()
    assert base.clean
    hot = {f: 5.0 for f in FEATURES}
    scored = PartsModel(model.version, model.parts).score(hot)
    flagged = AnomalyReport(base.width, base.height, parts=scored)
    assert "hands" in flagged.flagged_parts() and not flagged.clean
    assert AnomalyReport.from_dict(flagged.to_dict()).parts == flagged.parts


def anomaly_report_empty() -> AnomalyReport:
    from core.crop.from_sidecars import CropInputs

    return anomaly_report(CropInputs(), 100, 100, AnomalySettings())


def test_part_scores_read_the_fitted_parts_and_fall_back_to_regions_only_for_old_reports() -> None:
    def rec(tag: str, source: str, score: float) -> dict[str, object]:
        return {"tag": tag, "box": {"x": 0, "y": 0, "w": 1, "h": 1}, "score": score, "source": source}

    old = {
        "anomalies": [rec("extra_fingers", "hand:0", 0.6), rec("long_foot", "pose:0:left_foot", 0.7)],
        "uncertain_regions": [rec("hand_undetected", "pose:1:right_hand", 0.9)],
        "uncertain": True,
    }
    s = part_scores(old)
    assert s["hands"].score == 0.9 and s["hands"].flagged and s["hands"].regions == 2
    assert s["feet"].score == 0.7 and s["feet"].flagged
    assert s["limbs"].score == 0.0 and not s["limbs"].flagged
    fitted = {
        **old,
        "parts": {
            "hands": {"score": 0.4, "flag": False, "threshold": 0.9},
            "limbs": {"score": 0.8, "flag": True, "threshold": 0.7},
            "feet": {"score": 0.2, "flag": False, "threshold": 0.3},
        },
    }
    s = part_scores(fitted)
    assert (s["hands"].score, s["hands"].flagged, s["hands"].regions) == (0.4, False, 2)
    assert (s["limbs"].score, s["limbs"].flagged) == (0.8, True)
    assert (s["feet"].score, s["feet"].flagged) == (0.2, False)


def test_anomaly_reports_are_recomputed_when_the_shipped_parts_model_changes() -> None:
    """A refit of parts_model.json changes every report's `parts`; stored reports are only
    recomputed when the anomalies extractor's version changes, so the two must move together."""
    from core.extractors.analysis import AnomaliesExtractor

    assert AnomaliesExtractor.parts_model_version == shipped_parts_model().version, (
        "parts_model.json was refitted: bump AnomaliesExtractor.version and parts_model_version"
    )


def test_held_out_scores_rank_without_fold_constants_as_the_shipped_model_does() -> None:
    from core.anomaly.parts_fit import auc_or_half, fit_part, held_out, linear_score

    # Within one model the constant-free score ranks exactly as the probability does.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 2))
    y = x[:, 0] + 0.5 * rng.normal(size=60) > 0
    m = fit_part(x, y, ["a", "b"], l2=1.0)
    probs = np.array([m.probability({"a": r[0], "b": r[1]}) for r in x])
    assert (np.argsort(linear_score(m, x), kind="stable") == np.argsort(probs, kind="stable")).all()
    # Prompts whose base rates differ, the same signal inside each: pooled probabilities carry each
    # fold's intercept (fitted against the held-out prompt's base rate), the constant-free scores do not.
    groups = [g for g in "abcde" for _ in range(40)]
    rates = {"a": 0.95, "b": 0.8, "c": 0.6, "d": 0.4, "e": 0.2}
    y = np.array([rng.random() < rates[g] for g in groups])
    signal = y + rng.normal(scale=1.0, size=len(y))
    ho = held_out(signal[:, None], y, groups, l2=1.0)
    assert auc_or_half(ho.score, y) > auc_or_half(ho.prob, y) + 0.02


def test_hand_features_judge_each_hand_against_its_own_person() -> None:
    import dataclasses

    from tests.test_anomaly_cues import person

    hands, poses, faces = person()  # the test hands are all labelled "Right"
    right, left = hands
    empty = anomaly_report_empty()
    report = dataclasses.replace(empty, width=1000, height=1400)

    def feats(hs: list[Any]) -> dict[str, float]:
        return part_features(hs, poses, faces, report, None, AnomalySettings())

    f = feats(hands)
    # The hand on the left arm reads as a right hand: one mismatch; relabelled, none.
    assert f["handedness_mismatch"] == pytest.approx(np.log1p(1))
    assert feats([right, dataclasses.replace(left, handedness="Left")])["handedness_mismatch"] == 0.0
    assert f["hands_per_person"] == pytest.approx(1.0) and feats([right])["hands_per_person"] == pytest.approx(0.5)
    # A hand twice as large against the same forearm and face is further from a human's proportions.
    big = dataclasses.replace(right, landmarks=right.landmarks * np.array([2.0, 2.0, 1.0]) - [370.0, 720.0, 0.0])
    g = feats([big, left])
    assert g["hand_over_forearm"] > f["hand_over_forearm"] + 0.3
    assert g["hand_over_face"] > f["hand_over_face"] + 0.3
    assert f["hand_mean_low_score"] == pytest.approx(1 - 0.98)
