"""A trained ranking model never ends below the prior it started from (issue 10).

The pull towards the prior is chosen on the user's own decisions (out of fold), and the switch gate
measures a new model against the prior as well as against the model in force."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from core.rank.evaluate import Decision, Metrics, gate
from core.rank.prior import prior_weights
from core.rank.settings import RankSettings
from core.rank.simulate import World, make_world, simulate_decisions
from core.rank.train import train

WHEN = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> tuple[World, list[Decision]]:
    w = make_world(120, seed=3, noise=0.7)
    decisions, _ = simulate_decisions(w, seed=4)
    return w, decisions


def test_decisions_without_signal_leave_the_prior_in_place(world: tuple[World, list[Decision]]) -> None:
    w, decisions = world
    rng = np.random.default_rng(0)
    coin = [replace(d, winner=d.members[int(rng.integers(len(d.members)))]) for d in decisions]
    s = RankSettings()
    res = train(coin, w.library, s, now=WHEN)
    assert res.model.info["shrink"]["strength"] == "prior"
    # the weights (before the temperature) are the prior's: coin flips did not move them (the old
    # fixed pull, l2 = 1, let these 96 coin flips move a weight by 0.36)
    untempered = res.model.weights * res.model.info["temperature"]
    assert np.abs(untempered - prior_weights(res.model.space, s.prior)).max() < 1e-4  # T is rounded


def test_decisions_with_signal_pick_a_weak_pull_and_beat_the_prior(world: tuple[World, list[Decision]]) -> None:
    w, decisions = world
    res = train(decisions, w.library, RankSettings(), now=WHEN)
    assert res.model.info["shrink"]["strength"] <= 4.0
    prior = res.card["heldout"]["prior"]
    assert res.heldout.top1 is not None and res.heldout.top1 > prior["top1"] + 0.1
    assert res.switch and not res.revert_to_prior and "prior" in res.switch_reason


def test_gate_measures_against_the_prior_too() -> None:
    prior = Metrics(20, 0.50, 1.20, 0.25)
    weak_current = Metrics(20, 0.30, 1.35, 0.25)
    # better than a weak model in force but worse than the prior: not switched in, and the weak
    # model is retired for the prior (the old gate compared with the model in force only)
    switch, revert, why = gate(Metrics(20, 0.40, 1.30, 0.25), prior, weak_current)
    assert not switch and revert and "retired" in why
    # better than both: switched in
    assert gate(Metrics(20, 0.55, 1.10, 0.25), prior, weak_current)[:2] == (True, False)
    # a good model in force stays unless the new one is not worse than it as well
    good_current = Metrics(20, 0.60, 1.00, 0.25)
    assert gate(Metrics(20, 0.55, 1.10, 0.25), prior, good_current)[:2] == (False, False)
    assert gate(Metrics(20, 0.65, 0.95, 0.25), prior, good_current)[:2] == (True, False)
    # same top-1 as the prior with worse probabilities is not "not worse"
    assert gate(Metrics(20, 0.50, 1.30, 0.25), prior, None)[:2] == (False, False)
    # nothing held out: nothing switched and nothing retired
    assert gate(Metrics(0, None, None, None), prior, weak_current)[:2] == (False, False)
