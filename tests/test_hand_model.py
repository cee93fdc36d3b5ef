"""The learned per-hand model: labels from decisions, the held-out gate, persistence."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core.anomaly.hand_model import (
    HandExample,
    HandModel,
    HandModelError,
    assign_folds,
    fit_hand_model,
    hand_labels,
    roc_auc,
)
from core.anomaly.settings import CalibrationSettings, HandModelSettings
from core.sidecar_types import Box

CAL = CalibrationSettings()
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
DIM = 512
HAND_A = Box(10, 10, 20, 20)
HAND_B = Box(200, 200, 20, 20)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def _clusters(rng: np.random.Generator, n: int, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two centres and n unit-norm samples around each: (centres, positives, negatives)."""
    centres = _unit(rng.standard_normal((2, DIM)))
    pos = _unit(centres[0] + spread * rng.standard_normal((n, DIM)))
    neg = _unit(centres[1] + spread * rng.standard_normal((n, DIM)))
    return centres, pos, neg


def _examples(pos: np.ndarray, neg: np.ndarray) -> list[HandExample]:
    return [HandExample(f"p{i:03d}", e, True) for i, e in enumerate(pos)] + [
        HandExample(f"n{i:03d}", e, False) for i, e in enumerate(neg)
    ]


@pytest.fixture(scope="module")
def fitted() -> tuple[HandModel, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres, pos, neg = _clusters(rng, 40)
    model = fit_hand_model(_examples(pos, neg), HandModelSettings(), "clip-test", WHEN)
    fresh_pos = _unit(centres[0] + 0.05 * rng.standard_normal((10, DIM)))
    fresh_neg = _unit(centres[1] + 0.05 * rng.standard_normal((10, DIM)))
    return model, fresh_pos, fresh_neg


def test_approved_keeps_every_hand() -> None:
    assert hand_labels([HAND_A, HAND_B], "approved", None, ["extra_fingers"], CAL) == [False, False]


def test_crop_cuts_keeps_or_cannot_tell() -> None:
    crop = Box(0, 0, 100, 100)
    partly = Box(90, 50, 20, 20)  # half inside
    assert hand_labels([HAND_A, HAND_B, partly], "cropped", crop, [], CAL) == [False, True, None]
    assert hand_labels([HAND_A], "cropped", None, [], CAL) == [None]


def test_rejection_labels_only_a_lone_hand_and_only_with_a_hand_tag() -> None:
    assert hand_labels([HAND_A], "rejected", None, ["warped_wrist"], CAL) == [True]
    assert hand_labels([HAND_A], "rejected", None, ["malformed_phone_grip", "long_foot"], CAL) == [True]
    assert hand_labels([HAND_A], "rejected", None, ["long_foot"], CAL) == [None]
    assert hand_labels([HAND_A], "rejected", None, [], CAL) == [None]
    assert hand_labels([HAND_A, HAND_B], "rejected", None, ["extra_fingers"], CAL) == [None, None]


def test_other_roles_say_nothing() -> None:
    assert hand_labels([HAND_A, HAND_B], "other", Box(0, 0, 100, 100), ["extra_fingers"], CAL) == [None, None]
    assert hand_labels([], "approved", None, [], CAL) == []


def test_auc_counts_ties_half() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([False, False, True, True])) == 1.0
    assert roc_auc(np.array([0.4, 0.3, 0.2, 0.1]), np.array([False, False, True, True])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5]), np.array([True, False, False])) == 0.5
    # positive 0.5 vs negatives 0.5 (tie: half) and 0.2 (win): (0.5 + 1) / 2
    assert roc_auc(np.array([0.5, 0.5, 0.2]), np.array([True, False, False])) == 0.75


def test_separable_clusters_pass_the_gate(fitted: tuple[HandModel, np.ndarray, np.ndarray]) -> None:
    model, fresh_pos, fresh_neg = fitted
    assert model.cv_auc > 0.9
    assert (model.positives, model.negatives, model.dim) == (40, 40, DIM)
    assert model.components.shape == (16, DIM) and model.weights.shape == (16,)
    assert model.embedding_model == "clip-test" and model.trained_at == "2025-01-02T03:04:05+00:00"
    assert model.version.startswith("hand-") and len(model.version) == len("hand-") + 12
    assert (model.probabilities(fresh_pos) > 0.5).all()
    assert (model.probabilities(fresh_neg) < 0.5).all()


def test_classes_weigh_the_same_however_many_each_has() -> None:
    """With each class carrying half the weight, the optimum's bias equation reads
    mean P(removed | positive) + mean P(removed | negative) = 1; unweighted it would be 0.96 here."""
    rng = np.random.default_rng(11)
    _, pos, neg = _clusters(rng, 120)
    model = fit_hand_model(_examples(pos[:20], neg), HandModelSettings(), "clip-test", WHEN)
    assert (model.positives, model.negatives) == (20, 120)
    balance = model.probabilities(pos[:20]).mean() + model.probabilities(neg).mean()
    assert balance == pytest.approx(1.0, abs=1e-6)
    assert (model.probabilities(pos[20:]) > 0.5).all()
    assert (model.probabilities(neg[:20]) < 0.5).all()


def test_labels_unrelated_to_embeddings_are_refused() -> None:
    rng = np.random.default_rng(3)
    x = _unit(rng.standard_normal((80, DIM)))
    labels = rng.permutation([True] * 40 + [False] * 40)
    examples = [HandExample(f"g{i:03d}", e, bool(y)) for i, (e, y) in enumerate(zip(x, labels, strict=True))]
    with pytest.raises(HandModelError, match="AUC") as info:
        fit_hand_model(examples, HandModelSettings(), "clip-test", WHEN)
    assert info.value.kind == "hand_model" and info.value.path is None
    assert "0.750" in info.value.reason


def test_too_few_positives_or_negatives_are_refused() -> None:
    rng = np.random.default_rng(5)
    _, pos, neg = _clusters(rng, 40)
    with pytest.raises(HandModelError, match="positives"):
        fit_hand_model(_examples(pos[:14], neg), HandModelSettings(), "clip-test", WHEN)
    with pytest.raises(HandModelError, match="negatives"):
        fit_hand_model(_examples(pos, neg[:3]), HandModelSettings(), "clip-test", WHEN)


def test_mixed_dimensions_are_refused() -> None:
    rng = np.random.default_rng(5)
    _, pos, neg = _clusters(rng, 20)
    examples = _examples(pos, neg)
    examples[0] = HandExample("p000", pos[0][:256], True)
    with pytest.raises(HandModelError, match="dimensions"):
        fit_hand_model(examples, HandModelSettings(), "clip-test", WHEN)


def test_folds_never_split_a_group() -> None:
    groups = ["b", "a", "c", "a", "d", "b", "e", "c"]
    fold = assign_folds(groups, 3)
    for g in set(groups):
        assert len({int(f) for f, h in zip(fold, groups, strict=True) if h == g}) == 1
    assert fold.tolist() == [1, 0, 2, 0, 0, 1, 1, 2]  # sorted a b c d e dealt round-robin
    assert set(assign_folds(["x", "y"], 5).tolist()) == {0, 1}


def test_near_duplicate_siblings_cannot_leak_across_folds() -> None:
    """Each set holds two near-identical hands with the set's random label. Split across folds, a
    high-capacity model would recognise the twin and pass; grouped, it is refused."""
    rng = np.random.default_rng(9)
    base = _unit(rng.standard_normal((40, DIM)))
    set_labels = rng.permutation([True] * 20 + [False] * 20)
    loose = HandModelSettings(pca_components=256, l2=1e-3)
    grouped, split = [], []
    for i, (e, y) in enumerate(zip(base, set_labels, strict=True)):
        for j in range(2):
            twin = _unit(e + 1e-3 * rng.standard_normal(DIM))
            grouped.append(HandExample(f"set{i:02d}", twin, bool(y)))
            split.append(HandExample(f"set{i:02d}-{j}", twin, bool(y)))
    assert fit_hand_model(split, loose, "clip-test", WHEN).cv_auc > 0.9  # the leak is real
    with pytest.raises(HandModelError, match="AUC"):
        fit_hand_model(grouped, loose, "clip-test", WHEN)


def test_dict_and_file_round_trips_predict_the_same(
    fitted: tuple[HandModel, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    model, fresh_pos, fresh_neg = fitted
    x = np.vstack([fresh_pos, fresh_neg])
    again = HandModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.array_equal(again.probabilities(x), model.probabilities(x))
    assert again.version == model.version and again.cv_auc == model.cv_auc
    path = tmp_path / "hand_model.json"
    model.save(path)
    loaded = HandModel.load(path)
    assert np.array_equal(loaded.probabilities(x), model.probabilities(x))
    assert [p.name for p in tmp_path.iterdir()] == ["hand_model.json"]


def test_probabilities_check_their_input(fitted: tuple[HandModel, np.ndarray, np.ndarray]) -> None:
    model = fitted[0]
    assert model.probabilities(np.zeros((0, DIM))).shape == (0,)
    with pytest.raises(ValueError, match=r"dim 256.*dim 512"):
        model.probabilities(np.zeros((3, 256)))


def test_corrupted_models_are_refused(fitted: tuple[HandModel, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    d = fitted[0].to_dict()
    with pytest.raises(HandModelError, match="components"):
        HandModel.from_dict({**d, "components": [row[:100] for row in d["components"]]})
    with pytest.raises(HandModelError, match="weights"):
        HandModel.from_dict({**d, "weights": d["weights"][:-1]})
    with pytest.raises(HandModelError, match="format"):
        HandModel.from_dict({**d, "format": 99})
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(HandModelError, match="not a JSON object") as info:
        HandModel.load(bad)
    assert info.value.path == bad
