"""Exact-aspect crop sizes, and the reported error when only the full frame is exact."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.crop.aspect import aspect_error, min_sides, plan_sizes
from core.crop.settings import CropSettings


def brute_min_error(width: int, height: int, min_side_frac: float) -> float:
    """Smallest aspect error over every w x h crop (full frame excluded), by enumeration."""
    wmin, hmin = min_sides(width, height, min_side_frac)
    w = np.arange(wmin, width + 1)[:, None]
    h = np.arange(hmin, height + 1)[None, :]
    err = np.abs(w * height - h * width) / (h * width)
    err = err.astype(np.float64)
    err[-1, -1] = np.inf
    return float(err.min())


@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from([0.3, 0.5, 0.8]))
@settings(max_examples=300, deadline=None)
def test_exact_sizes_keep_the_reduced_ratio(width: int, height: int, frac: float) -> None:
    s = CropSettings(min_side_frac=frac)
    plan = plan_sizes(width, height, s)
    g = math.gcd(width, height)
    assert (plan.a, plan.b) == (width // g, height // g)
    assert tuple(plan.sizes[-1]) == (width, height)
    wmin, hmin = min_sides(width, height, frac)
    assert (plan.sizes[:, 0] >= wmin).all() and (plan.sizes[:, 1] >= hmin).all()
    assert (plan.sizes[:, 0] <= width).all() and (plan.sizes[:, 1] <= height).all()
    if plan.exact:
        # Integer multiples of a:b, every one of them in range.
        assert (plan.sizes[:, 0] * plan.b == plan.sizes[:, 1] * plan.a).all()
        assert (plan.sizes[:, 0] % plan.a == 0).all()
        ks = [k for k in range(1, g + 1) if k * plan.a >= wmin and k * plan.b >= hmin]
        if len(ks) > 1:
            assert list(plan.sizes[:, 0] // plan.a) == ks
            assert plan.min_error == 0.0
    else:
        errs = aspect_error(plan.sizes[:-1, 0], plan.sizes[:-1, 1], width, height)
        assert errs.min() == plan.min_error
        assert (errs <= max(s.near_exact_tolerance, plan.min_error) + 1e-12).all()
        assert plan.min_error <= s.max_aspect_error


@given(st.integers(2, 70), st.integers(2, 70), st.sampled_from([0.3, 0.5, 0.75]))
@settings(max_examples=400, deadline=None)
def test_reported_error_is_the_true_minimum(width: int, height: int, frac: float) -> None:
    # Allow any error so the plan always reports its minimum instead of refusing.
    plan = plan_sizes(width, height, CropSettings(min_side_frac=frac, max_aspect_error=0.1))
    if plan.exact and not plan.only_full_frame:
        return
    expect = brute_min_error(width, height, frac)
    if math.isinf(expect):
        assert math.isinf(plan.min_error)
    else:
        assert plan.min_error == expect
        assert plan.min_error_size is not None
        w, h = plan.min_error_size
        assert float(aspect_error(w, h, width, height)) == expect


def test_awkward_ratios() -> None:
    s = CropSettings()
    coprime = plan_sizes(1023, 1537, s)  # 3*11*31 vs 29*53: only the full frame is exact
    assert not coprime.exact and coprime.min_error < 1e-4
    assert "only the full frame keeps 1023:1537 exactly" in coprime.note
    strip = plan_sizes(7, 3000, s)
    assert not strip.exact and strip.min_error < 1e-3
    portrait = plan_sizes(1024, 1360, s)  # 64:85, k = 8..16
    assert portrait.exact and list(portrait.sizes[:, 0]) == [64 * k for k in range(8, 17)]
    gaic = plan_sizes(1024, 683, s)
    assert not gaic.exact and gaic.min_error_size is not None


def test_refuses_beyond_max_error_and_says_so() -> None:
    plan = plan_sizes(1023, 1537, CropSettings(max_aspect_error=1e-9))
    assert plan.only_full_frame and plan.exact
    assert "no crop possible" in plan.note and plan.min_error > 1e-9
    off = plan_sizes(1023, 1537, CropSettings(allow_near_exact=False))
    assert off.only_full_frame and "disabled" in off.note
