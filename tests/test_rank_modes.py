"""Mode policy and tracked metrics over a decision history."""

from __future__ import annotations

import numpy as np
import pytest

from core.rank.modes import (
    HistoryEntry,
    agreement_streak,
    auto_decides,
    box_iou,
    calibrate_threshold,
    coverage,
    crop_acceptance,
    decide_mode,
    residual_anomaly_rate,
    rolling_agreement,
    wilson_lower,
)
from core.rank.settings import RankSettings
from core.sidecar_types import Box

S = RankSettings(
    recommend_after_decisions=10,
    batch_after_agreeing_sets=30,
    batch_min_calibration_sets=20,
    batch_precision_target=0.9,
    batch_exit_window=20,
)


def _entry(i: int, agree: bool | None = True, conf: float = 0.99, **kw: object) -> HistoryEntry:
    proposed = None if agree is None else ("w" if agree else "x")
    return HistoryEntry(f"s{i}", float(i), "w", proposed, None if agree is None else conf, **kw)  # type: ignore[arg-type]


def _history(n_agree: int, before: list[HistoryEntry] | None = None, **kw: object) -> list[HistoryEntry]:
    start = len(before or [])
    return (before or []) + [_entry(start + i, **kw) for i in range(n_agree)]  # type: ignore[arg-type]


def test_watch_until_enough_decisions_then_recommend() -> None:
    nine = _history(0, [_entry(i, agree=None) for i in range(9)])
    assert decide_mode("auto", "watch", nine, S).mode == "watch"
    ten = [*nine, _entry(9, agree=None)]
    d = decide_mode("auto", "watch", ten, S)
    assert d.mode == "recommend" and "streak 0/30" in d.reason


def test_batch_exactly_at_the_agreement_streak() -> None:
    early = [_entry(i, agree=None) for i in range(10)] + [_entry(10, agree=False, conf=0.5)]
    h29 = _history(29, early)
    assert decide_mode("auto", "recommend", h29, S).mode == "recommend"
    h30 = _history(30, early)
    d = decide_mode("auto", "recommend", h30, S)
    assert d.mode == "batch" and d.threshold is not None
    # one disagreement resets the streak
    broken = [*h30, _entry(len(h30), agree=False)]
    assert decide_mode("auto", "recommend", broken, S).mode == "recommend"
    assert agreement_streak(broken, "all", None) == (0, 0.0)


def test_residual_anomalies_block_batch() -> None:
    early = [_entry(i, agree=None) for i in range(10)]
    dirty = _history(30, early, residual_anomalies=0)
    dirty[-5] = _entry(len(dirty) - 5, residual_anomalies=2)
    d = decide_mode("auto", "recommend", dirty, S)
    assert d.mode == "recommend" and "residual anomaly" in d.reason
    assert (
        decide_mode("auto", "recommend", dirty, S.model_copy(update={"batch_max_residual_anomaly_rate": 0.05})).mode
        == "batch"
    )


def test_confident_scope_ignores_sets_batch_would_not_decide() -> None:
    h = [_entry(i, agree=None) for i in range(10)]
    for i in range(60):
        h.append(_entry(len(h), agree=True, conf=0.97) if i % 2 else _entry(len(h), agree=(i % 4 == 0), conf=0.3))
    assert decide_mode("auto", "recommend", h, S).mode == "recommend"
    d = decide_mode("auto", "recommend", h, S.model_copy(update={"batch_streak_scope": "confident"}))
    assert d.mode == "batch" and d.threshold is not None and 0.3 < d.threshold <= 0.97
    assert auto_decides(0.97, d) and not auto_decides(0.3, d)


def test_pinned_modes_win() -> None:
    empty: list[HistoryEntry] = []
    for mode in ("watch", "recommend", "batch"):
        d = decide_mode(mode, "watch", empty, S)
        assert d.mode == mode and d.pinned
    # pinned batch without a calibrated threshold decides nothing alone: all sets go to review
    assert not auto_decides(1.0, decide_mode("batch", "watch", empty, S))


def test_batch_is_kept_until_precision_drops() -> None:
    h = _history(40, [_entry(i, agree=None) for i in range(10)])
    assert decide_mode("auto", "batch", h, S).mode == "batch"
    # a reviewed (low-confidence) disagreement does not end batch; confident mistakes do
    h2 = [*h, _entry(len(h), agree=False, conf=0.2)]
    assert decide_mode("auto", "batch", h2, S).mode == "batch"
    long = _history(100, h2)
    assert decide_mode("auto", "batch", long, S).mode == "batch"
    h3 = long + [_entry(len(long) + i, agree=False, conf=0.99) for i in range(3)]
    d = decide_mode("auto", "batch", h3, S)
    assert d.threshold is not None  # history as a whole still calibrates...
    assert d.mode == "recommend" and "left batch: precision 0.850 on the last 20" in d.reason  # ...recent sets don't
    # so many mistakes that no threshold qualifies any more
    h4 = h2 + [_entry(len(h2) + i, agree=False, conf=0.99) for i in range(3)]
    d4 = decide_mode("auto", "batch", h4, S)
    assert d4.mode == "recommend" and "any more" in d4.reason


def test_threshold_meets_the_precision_target_on_fresh_history() -> None:
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        conf = rng.beta(2, 1, n)
        return conf, rng.random(n) < conf  # calibrated: right with probability = confidence

    conf, ok = sample(4000)
    t = calibrate_threshold(conf.tolist(), ok.tolist(), 0.9, 1.645, 50)
    assert t is not None and t < 0.95  # it decides a useful share, not only the very top
    fresh_conf, fresh_ok = sample(20000)
    chosen = fresh_conf >= t
    assert fresh_ok[chosen].mean() >= 0.9
    assert chosen.mean() > 0.1
    # an unreachable target or too little history gives no threshold at all
    assert calibrate_threshold(conf.tolist(), ok.tolist(), 0.9999, 1.645, 50) is None
    assert calibrate_threshold(conf[:10].tolist(), ok[:10].tolist(), 0.5, 1.645, 50) is None


def test_calibration_ignores_prior_and_batch_decisions() -> None:
    good = _history(60, [_entry(i, agree=None) for i in range(10)])
    assert decide_mode("auto", "recommend", good, S).threshold is not None
    bad_prior = [_entry(i, agree=False, source="prior") for i in range(200)]
    bad_auto = [_entry(200 + i, agree=False, auto_decided=True) for i in range(200)]
    assert decide_mode("auto", "recommend", bad_prior + bad_auto + good, S).threshold == 0.99
    bad_model = [_entry(i, agree=False) for i in range(200)]
    assert decide_mode("auto", "recommend", bad_model + good, S).threshold is None


def test_wilson_bound_is_conservative() -> None:
    assert wilson_lower(20, 20, 1.645) < 0.9 < wilson_lower(200, 200, 1.645)
    assert wilson_lower(0, 0, 1.645) == 0.0
    assert wilson_lower(50, 100, 0.0) == pytest.approx(0.5)


def test_metrics_over_history() -> None:
    h = [
        _entry(0, agree=None),
        _entry(1, True),
        _entry(2, False),
        _entry(3, True, crop_iou=0.95),
        _entry(4, True, crop_iou=0.5, residual_anomalies=1),
        _entry(5, True, residual_anomalies=0),
    ]
    assert rolling_agreement(h, 100) == pytest.approx(4 / 5)
    assert rolling_agreement(h, 2) == 1.0
    assert crop_acceptance(h, 100, 0.9) == 0.5
    assert residual_anomaly_rate(h, 100) == 0.5
    assert coverage(h, 100, None) == pytest.approx(5 / 6)
    assert coverage(h, 100, 0.995) == 0.0
    assert rolling_agreement([], 10) is None and crop_acceptance([], 10, 0.9) is None


def test_box_iou() -> None:
    a = Box(0, 0, 10, 10)
    assert box_iou(a, a) == 1.0
    assert box_iou(a, Box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou(a, Box(20, 20, 5, 5)) == 0.0
