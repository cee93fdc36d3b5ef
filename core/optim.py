"""The damped Newton step our convex fits take (ranking model, hand model, per-part model), and
the MAP logistic regression the hand model and the per-part model share."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_NEWTON = 50


def backtrack(
    objective: Callable[[np.ndarray], float], x: np.ndarray, step: np.ndarray, f: float, decrement: float
) -> tuple[np.ndarray, float]:
    """x - t*step with t halved from 1 until the objective drops enough (Armijo, c = 1/4 of the
    Newton decrement); returns the new point and its objective."""
    t = 1.0
    while True:
        new = x - t * step
        f_new = objective(new)
        if f_new <= f - 0.25 * t * decrement or t < 1e-10:
            return new, f_new
        t *= 0.5


def sigmoid(u: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(u, -500, 500)))
    return out


def logistic_map(
    z: np.ndarray, y: np.ndarray, l2: float, bias_l2: float, weights: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """MAP weights and bias of a logistic model on `z` (n, k) by Newton with step halving: prior
    N(0, 1/l2) on the weights and N(0, 1/bias_l2) on the bias (a whisker keeps the Hessian
    invertible; near flat). `weights`: per-sample weights of the likelihood (None: every sample 1)."""
    n, k = z.shape
    x = np.hstack([z, np.ones((n, 1))])
    pen = np.append(np.full(k, l2), bias_l2)
    yf = y.astype(np.float64)

    def objective(t: np.ndarray) -> float:
        u = x @ t
        loss = np.logaddexp(0.0, u) - yf * u
        return float((np.sum(loss) if weights is None else weights @ loss) + 0.5 * pen @ (t * t))

    theta = np.zeros(k + 1)
    f = objective(theta)
    for _ in range(MAX_NEWTON):
        p = sigmoid(x @ theta)
        resid = p - yf
        curv = p * (1 - p)
        if weights is not None:
            resid, curv = weights * resid, weights * p * (1 - p)
        grad = x.T @ resid + pen * theta
        hess = (x.T * curv) @ x + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        if decrement / 2 <= 1e-12:
            break
        theta, f = backtrack(objective, theta, step, f, decrement)
    return theta[:-1], float(theta[-1])
