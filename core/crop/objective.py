"""Score many windows at once: every term is a numpy expression over all windows.

Windows are integer arrays x, y, w, h in original pixels. Saliency comes from the summed-area
table (four lookups per window); anomalies, heads and joints are interval arithmetic against
small (T, F, J) arrays broadcast over the windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.crop.context import CropContext
from core.crop.settings import CropSettings

# Rank weights of the user's rules, packed into one integer per window (lower is better):
# residual anomalies, then primary heads cut, then subject lost, then residual uncertain hands.
_R_ANOM, _R_HEAD, _R_LOST = 1_000_000, 10_000, 1_000


@dataclass(frozen=True)
class Scores:
    saliency: np.ndarray
    area: np.ndarray
    anomaly: np.ndarray
    head: np.ndarray
    joint: np.ndarray
    body: np.ndarray
    objective: np.ndarray
    resid_anomalies: np.ndarray  # int counts
    resid_uncertain: np.ndarray
    heads_cut: np.ndarray
    subject_lost: np.ndarray  # bool
    rank: np.ndarray  # int64, lower is better; ties broken by higher objective

    def terms(self, i: int) -> dict[str, float]:
        return {
            "objective": round(float(self.objective[i]), 5),
            "saliency_inside": round(float(self.saliency[i]), 5),
            "area_kept": round(float(self.area[i]), 5),
            "anomaly_overlap": round(float(self.anomaly[i]), 5),
            "head_cut": round(float(self.head[i]), 5),
            "joint_cut": round(float(self.joint[i]), 5),
            "body_short": round(float(self.body[i]), 5),
        }


def _overlap_fraction(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, K) fraction of each box's area inside each window."""
    ix = np.minimum(x1[:, None], boxes[:, 2]) - np.maximum(x0[:, None], boxes[:, 0])
    iy = np.minimum(y1[:, None], boxes[:, 3]) - np.maximum(y0[:, None], boxes[:, 1])
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    frac: np.ndarray = np.maximum(ix, 0.0) * np.maximum(iy, 0.0) / area
    return frac


def evaluate(ctx: CropContext, x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray, s: CropSettings) -> Scores:
    n = len(x)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    x2, y2 = xf + w, yf + h

    sat, k = ctx.sat, ctx.sat_scale
    mh, mw = sat.shape[0] - 1, sat.shape[1] - 1
    sx0 = np.minimum((xf * k + 0.5).astype(np.int64), mw)
    sx1 = np.minimum((x2 * k + 0.5).astype(np.int64), mw)
    sy0 = np.minimum((yf * k + 0.5).astype(np.int64), mh)
    sy1 = np.minimum((y2 * k + 0.5).astype(np.int64), mh)
    inside = sat[sy1, sx1] - sat[sy0, sx1] - sat[sy1, sx0] + sat[sy0, sx0]
    area = (w * h).astype(np.float64) / (ctx.width * ctx.height)
    saliency = inside / ctx.sat_total if ctx.sat_total > 0 else area

    # Targets, heads and eyes (as 1 px boxes) in one overlap computation.
    nt, nf = len(ctx.t_box), len(ctx.h_box)
    if len(ctx.boxes):
        frac = _overlap_fraction(xf, yf, x2, y2, ctx.boxes)
        ft, fh, fe = frac[:, :nt], frac[:, nt : nt + nf], frac[:, nt + nf :]
        resid = ft > s.removed_max_overlap
        # A target left partly in frame is still there (and now cut as well): any residue counts
        # in full, so no crop trades content for half-removing something it cannot remove.
        anomaly = np.where(resid, 1.0, ft) @ ctx.t_weight
        resid_anom = (resid & ctx.t_is_anomaly).sum(1)
        resid_unc = resid.sum(1) - resid_anom
        cut = 1.0 - fh
        head = cut @ ctx.h_weight + s.eye_penalty * ((1.0 - fe) @ ctx.e_weight)
        heads_cut = ((cut > s.head_cut_tolerance) & ctx.h_primary).sum(1)
    else:
        anomaly = head = np.zeros(n)
        resid_anom = resid_unc = heads_cut = np.zeros(n, dtype=np.int64)

    if len(ctx.j_xy):
        jx, jy, m = ctx.j_xy[:, 0], ctx.j_xy[:, 1], ctx.j_margin
        # An edge on the image border is the original framing, not a cut made by this crop.
        xl = np.where(x > 0, xf, -np.inf)[:, None]
        xr = np.where(x2 < ctx.width, x2, np.inf)[:, None]
        yt = np.where(y > 0, yf, -np.inf)[:, None]
        yb = np.where(y2 < ctx.height, y2, np.inf)[:, None]
        dv = np.minimum(np.abs(xl - jx), np.abs(xr - jx))
        dh = np.minimum(np.abs(yt - jy), np.abs(yb - jy))
        # A vertical edge cuts a joint only where it spans the joint's height, and vice versa.
        span_y = (jy >= yf[:, None] - m) & (jy <= y2[:, None] + m)
        span_x = (jx >= xf[:, None] - m) & (jx <= x2[:, None] + m)
        pen = np.maximum(span_y * np.maximum(1.0 - dv / m, 0.0), span_x * np.maximum(1.0 - dh / m, 0.0))
        joint = pen @ ctx.j_weight
    else:
        joint = np.zeros(n)

    need = s.full_body_min_fraction
    if len(ctx.body_span) and need > 0:
        top, bottom = ctx.body_span[:, 0], ctx.body_span[:, 1]
        kept = np.maximum(np.minimum(y2[:, None], bottom) - np.maximum(yf[:, None], top), 0) / (bottom - top)
        body = np.maximum(need - kept, 0).sum(1) / need
    else:
        body = np.zeros(n)

    objective = (
        s.alpha_saliency * saliency
        + s.epsilon_area * area
        - s.beta_anomaly * anomaly
        - s.gamma_head * head
        - s.delta_joint * joint
        - s.zeta_body * body
    )
    lost = saliency < s.min_subject_kept
    rank = (
        np.minimum(resid_anom, 999) * _R_ANOM
        + np.minimum(heads_cut, 99) * _R_HEAD
        + lost * _R_LOST
        + np.minimum(resid_unc, 999)
    ).astype(np.int64)
    return Scores(saliency, area, anomaly, head, joint, body, objective, resid_anom, resid_unc, heads_cut, lost, rank)
