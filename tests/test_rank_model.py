"""The conditional-logit model: recovery, calibration, warm starts, posterior, JSON round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core.rank.features import FeatureSpace
from core.rank.model import Choice, RankModel, RankModelError, choices_from_ranking, fit, make_version

D = 6
W_TRUE = np.array([1.5, -1.0, 0.5, 0.0, 2.0, -0.5])


def _sets(n: int, seed: int, m: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """n sets of m members with standard-normal features; winners drawn from softmax(X w_true)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, m, D))
    u = x @ W_TRUE
    p = np.exp(u - u.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    winners = np.array([rng.choice(m, p=row) for row in p])
    return x, winners


def _choices(x: np.ndarray, winners: np.ndarray) -> list[Choice]:
    return [Choice(xi, int(w)) for xi, w in zip(x, winners, strict=True)]


def _model(res_w: np.ndarray, cov: np.ndarray) -> RankModel:
    space = FeatureSpace(tuple(f"f{i}" for i in range(D)), np.zeros(D), np.ones(D))
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    return RankModel(space, res_w, cov, "model", make_version("rank", res_w, space, when), when.isoformat())


def test_fit_recovers_known_utility_direction() -> None:
    x, winners = _sets(3000, seed=1)
    res = fit(_choices(x, winners), D, l2=1.0)
    assert res.converged
    cos = res.weights @ W_TRUE / (np.linalg.norm(res.weights) * np.linalg.norm(W_TRUE))
    assert cos > 0.99
    # with 3000 sets the prior barely shrinks: the scale is recovered too
    assert np.allclose(res.weights, W_TRUE, atol=0.25)


def test_pairs_are_bradley_terry_and_rankings_explode() -> None:
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((3, D))
    ranking = choices_from_ranking(feats, [2, 0, 1])
    assert [c.features.shape[0] for c in ranking] == [3, 2]
    assert np.array_equal(ranking[0].features[0], feats[2]) and np.array_equal(ranking[1].features[0], feats[0])
    # a pair choice: P(a beats b) = sigmoid(w . (xa - xb)); the fitted model respects that form
    x, winners = _sets(2000, seed=3, m=2)
    res = fit(_choices(x, winners), D, l2=1.0)
    cos = res.weights @ W_TRUE / (np.linalg.norm(res.weights) * np.linalg.norm(W_TRUE))
    assert cos > 0.97


def test_single_member_sets_are_ignored_and_empty_data_gives_the_prior() -> None:
    res = fit([Choice(np.ones((1, D)), 0)], D, l2=2.0)
    assert np.array_equal(res.weights, np.zeros(D))
    assert np.allclose(res.cov, np.eye(D) / 2.0)


def test_bad_winner_index_is_rejected() -> None:
    with pytest.raises(ValueError, match="winner"):
        fit([Choice(np.zeros((3, D)), 5)], D, l2=1.0)


def test_warm_start_equals_cold_start() -> None:
    x, winners = _sets(400, seed=4)
    first = fit(_choices(x[:300], winners[:300]), D, l2=1.0)
    cold = fit(_choices(x, winners), D, l2=1.0)
    warm = fit(_choices(x, winners), D, l2=1.0, init=first.weights)
    assert warm.converged and cold.converged
    assert warm.iterations < cold.iterations
    assert np.allclose(warm.weights, cold.weights, atol=1e-8)
    assert np.allclose(warm.cov, cold.cov, atol=1e-8)


def test_posterior_probabilities_are_calibrated() -> None:
    x, winners = _sets(600, seed=5)
    res = fit(_choices(x, winners), D, l2=1.0)
    model = _model(res.weights, res.cov)
    xt, wt = _sets(3000, seed=6)
    probs = np.concatenate([model.predict(xi, samples=128).probabilities for xi in xt])
    picked = np.zeros_like(probs)
    picked[np.arange(len(xt)) * 4 + wt] = 1.0
    bins = np.clip((probs * 10).astype(int), 0, 9)
    ece = sum(
        abs(probs[bins == b].mean() - picked[bins == b].mean()) * np.mean(bins == b)
        for b in range(10)
        if np.any(bins == b)
    )
    assert ece < 0.03
    # and much better than a model that ignores the features (uniform 0.25 has ECE 0 but no skill)
    nll = -np.mean(np.log(probs[picked == 1]))
    assert nll < np.log(4) - 0.5


def test_posterior_uncertainty_shrinks_with_data() -> None:
    x, winners = _sets(1000, seed=7)
    small = fit(_choices(x[:50], winners[:50]), D, l2=1.0)
    large = fit(_choices(x, winners), D, l2=1.0)
    assert np.trace(large.cov) < np.trace(small.cov) / 5
    probe = x[0]
    few = _model(small.weights, small.cov).predict(probe)
    many = _model(large.weights, large.cov).predict(probe)
    assert few.utility_std.mean() > many.utility_std.mean()
    assert abs(many.probabilities.sum() - 1) < 1e-9


def test_predict_is_deterministic_and_a_single_member_is_certain() -> None:
    x, winners = _sets(100, seed=8)
    res = fit(_choices(x, winners), D, l2=1.0)
    m = _model(res.weights, res.cov)
    assert np.array_equal(m.predict(x[0]).probabilities, m.predict(x[0]).probabilities)
    one = m.predict(x[0][:1])
    assert one.probabilities.tolist() == [1.0] and one.gap_z == float("inf")


def test_json_round_trip_is_exact(tmp_path: Path) -> None:
    x, winners = _sets(200, seed=9)
    res = fit(_choices(x, winners), D, l2=1.0)
    rng = np.random.default_rng(0)
    space = FeatureSpace(
        tuple(f"f{i}" for i in range(D)),
        rng.standard_normal(D),
        rng.uniform(0.5, 2, D),
        rng.standard_normal(16),
        rng.standard_normal((3, 16)),
        notes=("a note",),
    )
    model = RankModel(space, res.weights, res.cov, "model", "rank-x", "2025-01-01T00:00:00+00:00", "rank-w", {"k": 1})
    path = tmp_path / "model.json"
    model.save(path)
    back = RankModel.load(path)
    assert back.to_dict() == model.to_dict()
    assert np.array_equal(back.weights, model.weights) and np.array_equal(back.cov, model.cov)
    assert back.space.pca_basis is not None and space.pca_basis is not None
    assert np.array_equal(back.space.pca_basis, space.pca_basis)
    assert np.array_equal(back.predict(x[0]).probabilities, model.predict(x[0]).probabilities)
    assert not (tmp_path / "model.json.tmp").exists()


def test_broken_model_files_raise_typed_errors(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    with pytest.raises(RankModelError) as e:
        RankModel.load(path)
    assert e.value.path == path
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RankModelError, match="not valid JSON"):
        RankModel.load(path)
    m = _model(np.zeros(D), np.eye(D)).to_dict()
    m["weights"] = [0.0] * (D + 1)
    path.write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(RankModelError, match="do not match"):
        RankModel.load(path)
