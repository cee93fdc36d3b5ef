"""The damped Newton step both of our convex fits take (ranking model, hand model)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
