"""Conditional-logit ranking model with a Gaussian prior and a Laplace posterior.

A decided set is a choice: the winner among its members, P(i) = softmax(X w)_i (Plackett-Luce
truncated at the top, i.e. conditional logit). A (winner, loser) pair is the same thing with two
members (Bradley-Terry), and a full ranking explodes into successive choices. The negative log
posterior is convex, so Newton's method with a backtracking line search finds the unique MAP in a
handful of iterations; the inverse Hessian there is the Laplace posterior covariance. Warm starts
therefore change only the iteration count, never the answer.

The fit is numpy on the CPU: with ~30 features even 10,000 sets take well under a second (see
benchmarks/rank.py), so a GPU would add transfer and launch overhead for nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.errors import BestshotError
from core.jsonfile import read_json_object, write_json_atomic
from core.optim import backtrack
from core.rank.features import FeatureSpace

MODEL_FORMAT = 1


class RankModelError(BestshotError):
    """A model file is unreadable or inconsistent, or there is too little data to fit one."""

    kind = "rank_model"


@dataclass(frozen=True)
class Choice:
    """`features` (m, d): standardised rows of the members; `winner` indexes the chosen row."""

    features: np.ndarray
    winner: int
    weight: float = 1.0


def choices_from_ranking(features: np.ndarray, order: Sequence[int], weight: float = 1.0) -> list[Choice]:
    """A full ranking (best first) as successive choices among the members not yet placed."""
    out = []
    rest = list(order)
    while len(rest) > 1:
        out.append(Choice(features[rest], 0, weight))
        rest = rest[1:]
    return out


@dataclass(frozen=True)
class FitResult:
    weights: np.ndarray
    cov: np.ndarray
    iterations: int
    converged: bool
    neg_log_posterior: float


def _pack(choices: Sequence[Choice], d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    m = max(c.features.shape[0] for c in choices)
    x = np.zeros((len(choices), m, d))
    mask = np.zeros((len(choices), m), dtype=bool)
    for i, c in enumerate(choices):
        k = c.features.shape[0]
        if c.features.shape[1] != d or not 0 <= c.winner < k:
            raise ValueError(f"choice {i}: features {c.features.shape} or winner {c.winner} do not fit d={d}")
        x[i, :k] = c.features
        mask[i, :k] = True
    win = np.array([c.winner for c in choices])
    wt = np.array([c.weight for c in choices], dtype=np.float64)
    return x, mask, win, wt


def _softmax_rows(u: np.ndarray, mask: np.ndarray) -> np.ndarray:
    u = np.where(mask, u, -np.inf)
    u = u - u.max(axis=-1, keepdims=True)
    e = np.exp(u)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def fit(
    choices: Sequence[Choice],
    dim: int,
    l2: float,
    init: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-14,
    mean: np.ndarray | None = None,
) -> FitResult:
    """MAP weights under N(mean, I/l2) (mean 0 unless given) and the Laplace covariance. Choices of
    one member are ignored.

    `mean` is where the weights sit without evidence: the fitted prior's weights make a model
    trained on a few dozen decisions start from what held up on labelled data instead of from
    "nothing matters", so early decisions refine the prior rather than replace it with noise.

    Stops when the Newton decrement (an estimate of the objective's distance to its minimum) is
    below `tol`; near the optimum Newton converges quadratically, so a tight absolute tolerance
    costs one extra iteration and makes warm and cold starts agree to ~1e-10.
    """
    choices = [c for c in choices if c.features.shape[0] > 1]
    m = np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64)
    w = m.copy() if init is None else np.asarray(init, dtype=np.float64).copy()
    eye = l2 * np.eye(dim)
    if not choices:
        return FitResult(m.copy(), np.linalg.inv(eye), 0, True, 0.0)
    x, mask, win, wt = _pack(choices, dim)
    xw = x[np.arange(len(choices)), win]  # (n, d) winner rows
    flat = x.reshape(-1, dim)

    def objective(w: np.ndarray) -> float:
        u = np.where(mask, x @ w, -np.inf)
        top = u.max(axis=1)
        lse = top + np.log(np.exp(u - top[:, None]).sum(axis=1))
        return float(np.sum(wt * (lse - xw @ w)) + 0.5 * l2 * (w - m) @ (w - m))

    f = objective(w)
    converged = False
    iterations = 0
    while True:
        p = _softmax_rows(x @ w, mask)
        xbar = np.matmul(p[:, None, :], x)[:, 0]
        grad = l2 * (w - m) - wt @ (xw - xbar)
        # sum_n wt_n (sum_j p_nj x_nj x_nj' - xbar_n xbar_n') as two BLAS products
        pw = (p * wt[:, None]).reshape(-1)
        hess = eye + (flat.T * pw) @ flat - (xbar.T * wt) @ xbar
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        # hess is evaluated at the final w on every exit, so the covariance is the one at the MAP
        if decrement / 2 <= tol:
            converged = True
            break
        if iterations == max_iter:
            break
        iterations += 1
        w, f = backtrack(objective, w, step, f, decrement)
    cov = np.linalg.inv(hess)
    return FitResult(w, 0.5 * (cov + cov.T), iterations, converged, f)


@dataclass(frozen=True)
class Prediction:
    """Per member: utility (posterior mean), its posterior std, and P(chosen) over the posterior."""

    utilities: np.ndarray
    utility_std: np.ndarray
    probabilities: np.ndarray
    gap_z: float  # (u_best - u_second) / std of that difference; inf when certain or one member


@dataclass(frozen=True)
class RankModel:
    space: FeatureSpace
    weights: np.ndarray
    cov: np.ndarray
    source: Literal["model", "prior"]
    version: str
    created: str
    parent: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    # P(winner) is softmax(utility / temperature): the ranking (and the reasons, which are weight
    # times feature difference) stay as fitted while the stated probability is made honest. The
    # prior carries its held-out temperature here; a trained model has its own folded into weights.
    temperature: float = 1.0

    def utilities(self, x: np.ndarray) -> np.ndarray:
        u: np.ndarray = x @ self.weights
        return u

    def predict(self, x: np.ndarray, samples: int = 512, seed: int = 0) -> Prediction:
        """Probabilities integrated over the Laplace posterior (Monte Carlo, fixed seed), at the
        model's temperature; utilities and their std as fitted."""
        mu = self.utilities(x)
        s = x @ self.cov @ x.T
        std = np.sqrt(np.clip(np.diag(s), 0, None))
        m = len(mu)
        if m == 1:
            return Prediction(mu, std, np.ones(1), float("inf"))
        order = np.argsort(-mu, kind="stable")
        a, b = order[0], order[1]
        var_gap = s[a, a] + s[b, b] - 2 * s[a, b]
        gap = float(mu[a] - mu[b])
        gap_z = gap / np.sqrt(var_gap) if var_gap > 1e-18 else float("inf")
        t = self.temperature
        if not np.any(s > 1e-18):
            return Prediction(mu, std, _softmax_rows(mu[None] / t, np.ones((1, m), bool))[0], gap_z)
        vals, vecs = np.linalg.eigh(0.5 * (s + s.T))
        root = vecs * np.sqrt(np.clip(vals, 0, None))
        z = np.random.default_rng(seed).standard_normal((samples, m))
        u = (mu + z @ root.T) / t
        p = _softmax_rows(u, np.ones_like(u, dtype=bool)).mean(axis=0)
        return Prediction(mu, std, p, gap_z)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "source": self.source,
            "version": self.version,
            "created": self.created,
            "parent": self.parent,
            "features": self.space.to_dict(),
            "weights": self.weights.tolist(),
            "cov": self.cov.tolist(),
            "info": dict(self.info),
            "temperature": self.temperature,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Path | None = None) -> RankModel:
        try:
            if d.get("format") != MODEL_FORMAT:
                raise ValueError(f"model format {d.get('format')!r}, this version reads {MODEL_FORMAT}")
            space = FeatureSpace.from_dict(d["features"])
            w = np.asarray(d["weights"], dtype=np.float64)
            cov = np.asarray(d["cov"], dtype=np.float64)
            if w.shape != (space.dim,) or cov.shape != (space.dim, space.dim):
                raise ValueError(f"weights {w.shape} / cov {cov.shape} do not match {space.dim} features")
            if d["source"] not in ("model", "prior"):
                raise ValueError(f"unknown source {d['source']!r}")
            return cls(
                space,
                w,
                cov,
                d["source"],
                str(d["version"]),
                str(d["created"]),
                d.get("parent"),
                dict(d.get("info", {})),
                float(d.get("temperature", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RankModelError(path, f"not a valid ranking model: {e}") from e

    def save(self, path: Path) -> None:
        """Atomic (temp file then rename), so a crash never leaves half a model."""
        write_json_atomic(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: Path) -> RankModel:
        return cls.from_dict(read_json_object(path, "model", RankModelError), path)


def make_version(prefix: str, weights: np.ndarray, space: FeatureSpace, when: datetime) -> str:
    """`<prefix>-<UTC time>-<hash of weights and features>`: sortable by time, unique by content."""
    digest = hashlib.sha256(json.dumps([weights.tolist(), space.to_dict()], sort_keys=True).encode()).hexdigest()[:8]
    return f"{prefix}-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}-{digest}"


def warm_start(previous: RankModel | None, space: FeatureSpace) -> np.ndarray | None:
    """Previous weights mapped onto the new columns by name (new columns start at 0)."""
    if previous is None:
        return None
    old = dict(zip(previous.space.names, previous.weights.tolist(), strict=True))
    return np.array([old.get(n, 0.0) for n in space.names])
