"""Ranking benchmark: fit time, proposal time, and the learning curve of a simulated user.

    .venv/bin/python benchmarks/rank.py [--seeds 5] [--noise 1.0]

Prints:
- fit time (Newton, the numpy core) and a whole training run (feature space + fit + honest
  evaluation + recent slice) for 300 and 10,000 decided sets of 4;
- proposal time per set of 4 (features, posterior-integrated probabilities, reasons);
- top-1 agreement on 1,000 held-out sets after 25/50/100/300 decisions, against the prior and
  against the simulated user's own ceiling (how often the argmax of their true utility matches
  their noisy choices on the same sets).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.rank.evaluate import evaluate, to_choices
from core.rank.features import FeatureSpace
from core.rank.model import RankModel, fit, make_version
from core.rank.prior import prior_model
from core.rank.propose import Member, propose
from core.rank.settings import RankSettings
from core.rank.simulate import make_world, simulate_decisions
from core.rank.train import train

S = RankSettings()
WHEN = datetime(2025, 1, 1, tzinfo=UTC)
CURVE = (25, 50, 100, 300)
EVAL_SETS = 1000


def _timed(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def fit_times() -> None:
    print("== fit time (sets of 4) ==")
    for n in (300, 10_000):
        t0 = time.perf_counter()
        world = make_world(n, seed=0)
        decisions, _ = simulate_decisions(world)
        t_world = time.perf_counter() - t0
        space = FeatureSpace.fit(list(world.library.values()), S.pca_components, S.pca_min_images)
        ids = list(world.library)
        t_feat = _timed(lambda: space.transform([world.library[i] for i in ids]), 1)  # noqa: B023
        x = dict(zip(ids, space.transform([world.library[i] for i in ids]), strict=True))
        choices = to_choices(decisions, x)
        t_fit = _timed(lambda: fit(choices, space.dim, S.l2))  # noqa: B023
        res = fit(choices, space.dim, S.l2)
        t0 = time.perf_counter()
        train(decisions, world.library, S, now=WHEN)
        t_train = time.perf_counter() - t0
        print(
            f"{n:>6} sets: Newton fit {t_fit * 1000:8.1f} ms ({res.iterations} iterations, d={space.dim})"
            f" | features for {len(ids)} images {t_feat:6.2f} s | whole train() {t_train:6.2f} s"
            f" | (simulating the world took {t_world:.1f} s)"
        )


def proposal_time() -> None:
    world = make_world(300, seed=1)
    decisions, _ = simulate_decisions(world)
    model = train(decisions, world.library, S, now=WHEN).model
    members = [[Member(m, m, world.library[m]) for m in d.members] for d in decisions[:200]]
    t0 = time.perf_counter()
    for k, ms in enumerate(members):
        propose(f"s{k}", ms, model, S)
    per = (time.perf_counter() - t0) / len(members)
    print(f"== proposal time == {per * 1000:.2f} ms per set of 4 ({S.posterior_samples} posterior samples)")


def learning_curve(seeds: int, noise: float) -> None:
    print(f"== learning curve (simulated user, Gumbel noise {noise}, {EVAL_SETS} held-out sets, {seeds} seeds) ==")
    rows: dict[str, list[float]] = {k: [] for k in ["prior", *map(str, CURVE), "ceiling"]}
    for seed in range(seeds):
        n_train = max(CURVE)
        # train and evaluation sets come from different prompt groups
        world = make_world(n_train + EVAL_SETS, seed=100 + seed, noise=noise)
        decisions, best = simulate_decisions(world, seed=200 + seed)
        train_d, eval_d = decisions[:n_train], decisions[n_train:]
        assert not {d.group for d in train_d} & {d.group for d in eval_d}
        space = FeatureSpace.fit(list(world.library.values()), S.pca_components, S.pca_min_images)
        ids = sorted({m for d in decisions for m in d.members})
        x = dict(zip(ids, space.transform([world.library[i] for i in ids]), strict=True))
        rows["prior"].append(evaluate(prior_model(space, S.prior, WHEN), eval_d, world.library, 64).top1 or 0)
        for n in CURVE:
            res = fit(to_choices(train_d[:n], x), space.dim, S.l2)
            model = RankModel(space, res.weights, res.cov, "model", make_version("b", res.weights, space, WHEN), "")
            rows[str(n)].append(evaluate(model, eval_d, world.library, 64).top1 or 0)
        rows["ceiling"].append(float(np.mean([d.winner == b for d, b in zip(eval_d, best[n_train:], strict=True)])))
    for key, vals in rows.items():
        label = f"after {key} decisions" if key.isdigit() else key
        print(f"  {label:<22} top-1 {statistics.mean(vals):.3f} (min {min(vals):.3f}, max {max(vals):.3f})")
    print("  chance                 top-1 0.250")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--noise", type=float, default=1.0)
    args = ap.parse_args()
    fit_times()
    proposal_time()
    learning_curve(args.seeds, args.noise)


if __name__ == "__main__":
    main()
