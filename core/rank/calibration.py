"""Calibration of P(winner): reliability bins, expected calibration error, and a fitted correction.

`hits` may be fractional (a tie-aware hit); `probs` are the P(winner) the proposals stated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bin:
    lo: float
    hi: float
    n: int
    mean_p: float
    hit_rate: float


def reliability(probs: Sequence[float] | np.ndarray, hits: Sequence[float] | np.ndarray, bins: int = 5) -> list[Bin]:
    """Equal-width bins of stated probability with the observed hit rate in each (empty bins left out)."""
    p = np.asarray(probs, dtype=np.float64)
    h = np.asarray(hits, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append(Bin(float(edges[b]), float(edges[b + 1]), int(m.sum()), float(p[m].mean()), float(h[m].mean())))
    return out


def expected_calibration_error(
    probs: Sequence[float] | np.ndarray, hits: Sequence[float] | np.ndarray, bins: int = 5
) -> float:
    """Sum over bins of (share of sets) x |mean stated P - hit rate|; 0 is perfectly calibrated."""
    n = len(np.asarray(probs))
    if n == 0:
        return float("nan")
    return float(sum(b.n / n * abs(b.mean_p - b.hit_rate) for b in reliability(probs, hits, bins)))
