"""Which crop sizes keep the original aspect ratio.

W:H reduces to a:b (divide by g = gcd(W, H)); the exact crops are k*a x k*b for k = 1..g. When
no k < g gives a crop of at least `min_side_frac` of the original (coprime sides: g = 1), only the
full frame is exact; then the nearest sizes are offered with their relative error
|w/h - W/H| / (W/H), never silently.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from core.crop.settings import CropSettings


@dataclass(frozen=True)
class AspectPlan:
    a: int
    b: int
    exact: bool  # every candidate size keeps a:b exactly
    sizes: np.ndarray  # (n, 2) int64 (w, h), every admissible size, ascending w; ends with (W, H)
    min_error: float  # smallest error of any crop smaller than the full frame (0 when exact)
    min_error_size: tuple[int, int] | None
    note: str

    @property
    def only_full_frame(self) -> bool:
        return len(self.sizes) == 1


def aspect_error(w: int | np.ndarray, h: int | np.ndarray, width: int, height: int) -> np.ndarray:
    """Relative aspect error of w x h against width x height (0 when exact)."""
    w_ = np.asarray(w, dtype=np.float64)
    h_ = np.asarray(h, dtype=np.float64)
    err: np.ndarray = np.abs(w_ * height - h_ * width) / (h_ * width)
    return err


def min_sides(width: int, height: int, min_side_frac: float) -> tuple[int, int]:
    return max(1, math.ceil(min_side_frac * width - 1e-9)), max(1, math.ceil(min_side_frac * height - 1e-9))


def near_sizes(width: int, height: int, min_side_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """For every admissible width, the one or two heights nearest the ratio, with their errors.

    The error |r/h - 1| (r = w*H/W) falls towards h = r from both sides, so the best admissible
    height for a width is floor(r) or ceil(r) clipped to [hmin, H]; at w = W that is the full frame
    itself, which is left out, so its neighbour H - 1 stands in.
    """
    wmin, hmin = min_sides(width, height, min_side_frac)
    w = np.arange(wmin, width + 1, dtype=np.int64)
    r = w * height / width
    lo = np.clip(np.floor(r).astype(np.int64), hmin, height)
    hi = np.clip(np.ceil(r).astype(np.int64), hmin, height)
    cand = np.concatenate([np.stack([w, lo], 1), np.stack([w, hi], 1), [[width, height - 1]]])
    key = np.unique(cand[:, 0] * (height + 1) + cand[:, 1])  # 1D unique: far faster than axis=0
    cand = np.stack([key // (height + 1), key % (height + 1)], 1)
    ok = (cand[:, 1] >= hmin) & (cand[:, 1] <= height) & ~((cand[:, 0] == width) & (cand[:, 1] == height))
    cand = cand[ok]
    return cand, aspect_error(cand[:, 0], cand[:, 1], width, height)


def plan_sizes(width: int, height: int, s: CropSettings) -> AspectPlan:
    """The admissible crop sizes for this image size (cached: generators repeat a few sizes)."""
    return _plan(width, height, s.min_side_frac, s.allow_near_exact, s.max_aspect_error, s.near_exact_tolerance)


@functools.lru_cache(maxsize=64)
def _plan(
    width: int,
    height: int,
    min_side_frac: float,
    allow_near_exact: bool,
    max_aspect_error: float,
    near_exact_tolerance: float,
) -> AspectPlan:
    plan = _make_plan(width, height, min_side_frac, allow_near_exact, max_aspect_error, near_exact_tolerance)
    plan.sizes.setflags(write=False)  # shared between calls through the cache
    return plan


def _make_plan(
    width: int,
    height: int,
    min_side_frac: float,
    allow_near_exact: bool,
    max_aspect_error: float,
    near_exact_tolerance: float,
) -> AspectPlan:
    g = math.gcd(width, height)
    a, b = width // g, height // g
    wmin, hmin = min_sides(width, height, min_side_frac)
    ks = np.arange(1, g + 1, dtype=np.int64)
    ks = ks[(ks * a >= wmin) & (ks * b >= hmin)]
    full = np.array([[width, height]], dtype=np.int64)
    if len(ks) > 1:
        sizes = np.stack([ks * a, ks * b], 1)
        return AspectPlan(a, b, True, sizes, 0.0, None, f"exact {a}:{b}, {len(ks) - 1} crop sizes below full frame")

    cand, err = near_sizes(width, height, min_side_frac)
    if len(cand) == 0:
        return AspectPlan(
            a,
            b,
            True,
            full,
            math.inf,
            None,
            f"only the full frame fits {a}:{b}; the image is too small for any smaller crop",
        )
    i = int(np.argmin(err))
    min_err, best = float(err[i]), (int(cand[i, 0]), int(cand[i, 1]))
    head = f"only the full frame keeps {a}:{b} exactly; smallest achievable error {min_err:.3%} at {best[0]}x{best[1]}"
    if not allow_near_exact or min_err > max_aspect_error:
        why = "near-exact crops disabled" if not allow_near_exact else f"over max_aspect_error {max_aspect_error:.3%}"
        return AspectPlan(a, b, True, full, min_err, best, f"{head} ({why}): no crop possible")
    keep = err <= max(near_exact_tolerance, min_err) + 1e-15
    near = cand[keep]
    near = near[np.argsort(near[:, 0], kind="stable")]
    sizes = np.concatenate([near, full])
    return AspectPlan(
        a,
        b,
        False,
        sizes,
        min_err,
        best,
        f"{head}; proposing near-exact crops (error <= {max(near_exact_tolerance, min_err):.3%})",
    )
