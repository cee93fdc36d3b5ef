"""Window search: multi-scale grid plus anchors, hill-climbing, non-maximum suppression.

Anchors make "is there a window that removes this / keeps that" exact for every searched size:
if any position of a w x h window satisfies a set of keep-out (anomaly) and keep-in (head)
constraints, sliding it left and up until something blocks lands on x in {0, W-w, ceil(x2_i),
floor(x1_i)-w, floor(hx1), ceil(hx2)-w} (and likewise y), which the grid always contains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.crop.aspect import AspectPlan
from core.crop.context import CropContext
from core.crop.objective import Scores, evaluate
from core.crop.settings import CropSettings


@dataclass(frozen=True)
class Windows:
    x: np.ndarray
    y: np.ndarray
    si: np.ndarray  # index into plan.sizes
    scores: Scores


def pick_sizes(plan: AspectPlan, ctx: CropContext, s: CropSettings) -> np.ndarray:
    """Evenly spread sizes plus, per target, the largest size fitting wholly on each side of it."""
    n = len(plan.sizes)
    idx = np.unique(np.rint(np.linspace(0, n - 1, min(n, s.n_scales))).astype(np.int64))
    if len(ctx.t_box) and n > 1:
        ws, hs = plan.sizes[:, 0], plan.sizes[:, 1]
        lim_w = np.concatenate([np.floor(ctx.t_box[:, 0]), ctx.width - np.ceil(ctx.t_box[:, 2])])
        lim_h = np.concatenate([np.floor(ctx.t_box[:, 1]), ctx.height - np.ceil(ctx.t_box[:, 3])])
        extra = [np.searchsorted(ws, lim, side="right") - 1 for lim in lim_w]
        extra += [int(np.nonzero(hs <= lim)[0].max()) if (hs <= lim).any() else -1 for lim in lim_h]
        idx = np.union1d(idx, [e for e in extra if e >= 0])
    out: np.ndarray = idx.astype(np.int64)
    return out


def _axis_positions(
    extent: int,
    sizes: np.ndarray,
    n_grid: int,
    starts: np.ndarray,
    ends: np.ndarray,
    keep_lo: np.ndarray,
    keep_hi: np.ndarray,
) -> np.ndarray:
    """(n_sizes, n_grid + anchors) integer positions along one axis, each row within [0, extent - size]."""
    free = (extent - sizes).astype(np.float64)[:, None]
    even = free * np.linspace(0.0, 1.0, n_grid)[None, :]
    fixed = np.concatenate([np.ceil(ends), np.floor(keep_lo)])[None, :]  # clear of a target / head inside
    minus = np.concatenate([np.floor(starts), np.ceil(keep_hi)])[None, :] - sizes[:, None]
    pos = np.concatenate([even, np.broadcast_to(fixed, (len(sizes), fixed.shape[1])), minus, free], axis=1)
    out: np.ndarray = np.clip(np.rint(pos), 0, free).astype(np.int64)
    return out


def grid(plan: AspectPlan, ctx: CropContext, s: CropSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every size's grid and anchor positions, all combinations, duplicates removed."""
    si = pick_sizes(plan, ctx, s)
    w, h = plan.sizes[si, 0], plan.sizes[si, 1]
    px = _axis_positions(
        ctx.width, w, s.grid_positions, ctx.t_box[:, 0], ctx.t_box[:, 2], ctx.h_box[:, 0], ctx.h_box[:, 2]
    )
    py = _axis_positions(
        ctx.height, h, s.grid_positions, ctx.t_box[:, 1], ctx.t_box[:, 3], ctx.h_box[:, 1], ctx.h_box[:, 3]
    )
    nx, ny = px.shape[1], py.shape[1]
    X = np.broadcast_to(px[:, :, None], (len(si), nx, ny)).ravel()
    Y = np.broadcast_to(py[:, None, :], (len(si), nx, ny)).ravel()
    S = np.repeat(si, nx * ny)
    # One key per window; sizes below 2**20 px keep it exact in int64.
    key = np.unique((S << 40) | (Y << 20) | X)
    return key & 0xFFFFF, (key >> 20) & 0xFFFFF, key >> 40


def score(plan: AspectPlan, ctx: CropContext, x: np.ndarray, y: np.ndarray, si: np.ndarray, s: CropSettings) -> Windows:
    return Windows(x, y, si, evaluate(ctx, x, y, plan.sizes[si, 0], plan.sizes[si, 1], s))


def order(win: Windows) -> np.ndarray:
    """Indices best first: rank (user's rules) ascending, then objective descending."""
    out: np.ndarray = np.lexsort((-win.scores.objective, win.scores.rank))
    return out


# Neighbourhood: 8 shifts (at the step and at half of it), then a size step up or down keeping the centre or one corner in place
# (corners let a crop grow towards the open side while an edge stays clear of an anomaly).
_DX = np.array([-1, -1, -1, 0, 0, 1, 1, 1])
_DY = np.array([-1, 0, 1, -1, 1, -1, 0, 1])
_FX = np.tile([0.5, 0.0, 1.0, 0.0, 1.0], 2)
_FY = np.tile([0.5, 0.0, 0.0, 1.0, 1.0], 2)
_SG = np.repeat([1, -1], 5)


def _moves(
    plan: AspectPlan, ctx: CropContext, x: np.ndarray, y: np.ndarray, si: np.ndarray, st: np.ndarray, ss: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = plan.sizes
    s2 = np.clip(si[:, None] + _SG * ss[:, None], 0, len(sizes) - 1)
    dw = sizes[s2, 0] - sizes[si, 0][:, None]
    dh = sizes[s2, 1] - sizes[si, 1][:, None]
    half = np.maximum(1, st // 2)[:, None]
    X = np.concatenate(
        [x[:, None] + _DX * st[:, None], x[:, None] + _DX * half, x[:, None] - np.rint(_FX * dw).astype(np.int64)], 1
    )
    Y = np.concatenate(
        [y[:, None] + _DY * st[:, None], y[:, None] + _DY * half, y[:, None] - np.rint(_FY * dh).astype(np.int64)], 1
    )
    S = np.concatenate([np.broadcast_to(si[:, None], (len(si), 2 * len(_DX))), s2], 1)
    X = np.clip(X, 0, ctx.width - sizes[S, 0])
    Y = np.clip(Y, 0, ctx.height - sizes[S, 1])
    return X, Y, S


def refine(plan: AspectPlan, ctx: CropContext, start: Windows, s: CropSettings) -> Windows:
    """Hill-climb every start at once: move to the best neighbour while it improves (rank, then
    objective). Shifts are tried at the step and half of it, so when none improves the step drops
    to a quarter; stop at 1 px / 1 size step without improvement."""
    x, y, si = start.x.copy(), start.y.copy(), start.si.copy()
    rank, obj = start.scores.rank.copy(), start.scores.objective.copy()
    n_sizes = len(plan.sizes)
    gap = max(1, int(max(ctx.width, ctx.height) / max(2, s.grid_positions - 1)) // 2)
    st = np.full(len(x), gap, dtype=np.int64)
    ss = np.full(len(x), max(1, n_sizes // (2 * s.n_scales)), dtype=np.int64)
    active = np.ones(len(x), dtype=bool)
    for _ in range(s.refine_max_iters):
        if not active.any():
            break
        a = np.nonzero(active)[0]
        X, Y, S = _moves(plan, ctx, x[a], y[a], si[a], st[a], ss[a])
        k = X.shape[1]
        sc = evaluate(ctx, X.ravel(), Y.ravel(), plan.sizes[S.ravel(), 0], plan.sizes[S.ravel(), 1], s)
        r, o = sc.rank.reshape(-1, k), sc.objective.reshape(-1, k)
        best_r = r.min(1)
        j = np.argmax(np.where(r == best_r[:, None], o, -np.inf), 1)
        rows = np.arange(len(a))
        bo = o[rows, j]
        improve = (best_r < rank[a]) | ((best_r == rank[a]) & (bo > obj[a] + 1e-12))
        up = a[improve]
        x[up], y[up], si[up] = X[rows, j][improve], Y[rows, j][improve], S[rows, j][improve]
        rank[up], obj[up] = best_r[improve], bo[improve]
        stuck = a[~improve]
        done = stuck[(st[stuck] <= 1) & (ss[stuck] <= 1)]
        active[done] = False
        st[stuck] = np.maximum(1, st[stuck] // 4)
        ss[stuck] = np.maximum(1, ss[stuck] // 2)
    return score(plan, ctx, x, y, si, s)


def iou(
    ax: np.ndarray, ay: np.ndarray, aw: np.ndarray, ah: np.ndarray, bx: float, by: float, bw: float, bh: float
) -> np.ndarray:
    ix = np.clip(np.minimum(ax + aw, bx + bw) - np.maximum(ax, bx), 0, None)
    iy = np.clip(np.minimum(ay + ah, by + bh) - np.maximum(ay, by), 0, None)
    inter = ix * iy
    out: np.ndarray = inter / (aw * ah + bw * bh - inter)
    return out


def select(plan: AspectPlan, win: Windows, count: int, nms_iou: float) -> list[int]:
    """Best window, then the best ones overlapping every chosen one by at most `nms_iou`."""
    idx = order(win)
    w, h = plan.sizes[win.si, 0].astype(np.float64), plan.sizes[win.si, 1].astype(np.float64)
    x, y = win.x.astype(np.float64), win.y.astype(np.float64)
    chosen: list[int] = []
    alive = np.ones(len(idx), dtype=bool)
    for pos, i in enumerate(idx):
        if not alive[pos]:
            continue
        chosen.append(int(i))
        if len(chosen) >= count:
            break
        ov = iou(x[idx], y[idx], w[idx], h[idx], x[i], y[i], w[i], h[i])
        alive &= ov <= nms_iou
    return chosen
