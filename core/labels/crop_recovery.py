"""Find where a cropped image came from: which source, and the crop box in source pixels.

The user's tool either cut the box out unchanged (exact) or also resized it (a 50 % export,
an upscale). Both are recovered from the pixels alone, coarse to fine:

1. coarse: both images shrunk so the source's long side is `crop_coarse_side`; the crop is
   correlated at every box width on a log grid (scale unknown, aspect kept);
2. medium: the best few widths are refined around their coarse position at `crop_medium_side`;
3. exact test: when the estimate is unscaled, integer positions nearby are compared pixel for
   pixel; a match within `crop_exact_tolerance` is an exact cut;
4. otherwise ECC (OpenCV's enhanced correlation, affine) aligns the crop to the source at the
   crop's own pixel density, giving a sub-pixel box and its correlation as the match quality.

Coordinates are edge coordinates: pixel i spans [i, i+1], so a resize is a pure scaling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from core.errors import BestshotError
from core.labels.settings import LabelSettings
from core.sidecar_types import Box

Method = Literal["exact", "ecc", "template"]
# Smallest template side (pixels) worth correlating at the coarse level.
_MIN_TEMPLATE = 8
# Coarse hypotheses carried to the medium level: guards against a repetitive texture winning.
_COARSE_KEEP = 3
# Grey-level standard deviation below which an image has nothing to correlate (flat colour).
_FLAT_STD = 1.0
# Coarse scores this close to the best one are ambiguous (near-identical set members): those
# candidates get the full recovery too.
_AMBIGUOUS_MARGIN = 0.05
# Coarse peaks scoring this much below the best are not refined.
_REFINE_MARGIN = 0.1


class CropNotMatchedError(BestshotError):
    """No candidate source explains the crop well enough (reason says how close the best came)."""

    kind = "crop_not_matched"


@dataclass(frozen=True)
class CropMatch:
    box: Box  # the crop's region in source pixels (edge coordinates, sub-pixel)
    quality: float  # correlation between crop and that region resampled, 1 = identical
    exact: bool  # cut without resampling: box is integral and pixels agree
    scale: tuple[float, float]  # crop pixels per source pixel, (x, y)
    aspect_error: float  # |box aspect / source aspect - 1|: the user keeps the source's aspect
    method: Method
    source_size: tuple[int, int]  # (width, height) of the source

    def int_box(self) -> Box:
        """The box rounded to whole pixels and kept inside the source, as session lines store it."""
        sw, sh = self.source_size
        x0, y0 = min(max(round(self.box.x), 0), sw - 1), min(max(round(self.box.y), 0), sh - 1)
        x1, y1 = min(max(round(self.box.x2), x0 + 1), sw), min(max(round(self.box.y2), y0 + 1), sh)
        return Box(x0, y0, x1 - x0, y1 - y0)


@dataclass(frozen=True)
class _Hypothesis:
    score: float
    x: float  # box in source edge coordinates
    y: float
    w: float
    h: float


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_RGBA2GRAY)
    raise ValueError(f"expected a grey, RGB or RGBA image, got shape {img.shape}")


def _shrink(img: np.ndarray, factor: float) -> np.ndarray:
    if factor >= 1.0:
        return img
    w, h = max(1, round(img.shape[1] * factor)), max(1, round(img.shape[0] * factor))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def _resize_to(img: np.ndarray, w: int, h: int) -> np.ndarray:
    # Callers pre-shrink to at most twice the target, where bilinear aliases little and costs
    # a fraction of INTER_AREA (this runs ~150 times per recovery).
    interp = cv2.INTER_AREA if w < img.shape[1] / 2 else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def _width_range(
    crop_shape: tuple[int, ...], src_shape: tuple[int, ...], settings: LabelSettings
) -> tuple[float, float]:
    ch, cw = crop_shape[:2]
    sh, sw = src_shape[:2]
    w_max = min(float(sw), sh * cw / ch)
    w_min = min(w_max, settings.crop_min_fraction * sw)
    return w_min, w_max


def _correlate(level: np.ndarray, tmpl: np.ndarray) -> tuple[float, int, int]:
    th, tw = tmpl.shape
    if th > level.shape[0] or tw > level.shape[1] or min(th, tw) < 2:
        return -1.0, 0, 0
    # OpenCV scores a constant template 1.0 everywhere: that is no evidence at all.
    if float(tmpl.std()) < _FLAT_STD:
        return -1.0, 0, 0
    res = cv2.matchTemplate(level, tmpl, cv2.TM_CCOEFF_NORMED)
    _, best, _, loc = cv2.minMaxLoc(res)
    # A flat template gives NaN/inf correlations; treat it as no evidence.
    return (float(best) if math.isfinite(best) else -1.0), int(loc[0]), int(loc[1])


def _coarse(crop: np.ndarray, src: np.ndarray, settings: LabelSettings) -> list[_Hypothesis]:
    """Best box widths on a log grid, at the coarse level; best first."""
    ch, cw = crop.shape
    f = min(1.0, settings.crop_coarse_side / max(src.shape))
    level = _shrink(src, f)
    w_min, w_max = _width_range(crop.shape, src.shape, settings)
    w_min = max(w_min, _MIN_TEMPLATE / f, _MIN_TEMPLATE / f * cw / ch)
    if w_min > w_max:
        return []
    steps = max(1, math.ceil(math.log(w_max / w_min) / math.log1p(settings.crop_scale_step)))
    widths = {w_max * (w_min / w_max) ** (i / steps) for i in range(steps + 1)}
    if w_min <= cw <= w_max:
        widths.add(float(cw))  # the unscaled cut is the commonest case: always try it exactly
    # Shrink the crop once to twice the largest template: per-width resizes then stay cheap.
    small = _shrink(crop, min(1.0, 2 * max(level.shape) / max(crop.shape)))
    found: list[_Hypothesis] = []
    for w in sorted(widths):
        h = w * ch / cw
        tw, th = max(1, round(w * f)), max(1, round(h * f))
        score, x, y = _correlate(level, _resize_to(small, tw, th))
        found.append(_Hypothesis(score, x / f, y / f, w, h))
    found.sort(key=lambda hyp: -hyp.score)
    kept: list[_Hypothesis] = []
    for hyp in found:
        # Keep distinct scales only: neighbours of the winner are the same peak.
        if all(abs(math.log(hyp.w / k.w)) > 3 * settings.crop_scale_step for k in kept):
            kept.append(hyp)
        if len(kept) == _COARSE_KEEP:
            break
    return kept


def _medium(crop: np.ndarray, src: np.ndarray, hyp: _Hypothesis, settings: LabelSettings) -> _Hypothesis:
    """Refine one coarse hypothesis: finer widths in two passes, searched only near its position."""
    ch, cw = crop.shape
    f = min(1.0, settings.crop_medium_side / max(src.shape))
    level = _shrink(src, f)
    coarse_f = min(1.0, settings.crop_coarse_side / max(src.shape))
    margin = 2.0 / coarse_f + 2 * settings.crop_scale_step * hyp.w  # coarse pixel error + scale error
    _, w_max = _width_range(crop.shape, src.shape, settings)
    small = _shrink(crop, min(1.0, 1.5 * hyp.w * f / cw))
    best = _Hypothesis(-2.0, hyp.x, hyp.y, hyp.w, hyp.h)
    step = settings.crop_scale_step
    for centre, ratio in ((hyp.w, step / 2), (None, step / 8)):
        base = best.w if centre is None else centre
        for i in range(-4, 5):
            w = min(w_max, base * (1 + ratio) ** i)
            h = w * ch / cw
            x0 = max(0, math.floor((hyp.x - margin) * f))
            y0 = max(0, math.floor((hyp.y - margin) * f))
            x1 = min(level.shape[1], math.ceil((hyp.x + w + margin) * f))
            y1 = min(level.shape[0], math.ceil((hyp.y + h + margin) * f))
            tw, th = max(1, round(w * f)), max(1, round(h * f))
            score, x, y = _correlate(level[y0:y1, x0:x1], _resize_to(small, tw, th))
            if score > best.score:
                best = _Hypothesis(score, (x0 + x) / f, (y0 + y) / f, w, h)
    return best


def _try_exact(crop: np.ndarray, src: np.ndarray, hyp: _Hypothesis, settings: LabelSettings) -> CropMatch | None:
    """Pixel-for-pixel test of an unscaled cut near the estimate.

    Only a central patch is searched over the few candidate offsets; the whole crop is then
    compared once at the best offset.
    """
    ch, cw = crop.shape
    if abs(hyp.w - cw) > max(2.0, 0.02 * cw) or ch > src.shape[0] or cw > src.shape[1]:
        return None
    r = 4 + math.ceil(max(src.shape) / settings.crop_medium_side)
    ph, pw = min(ch, 96), min(cw, 96)
    py, px = (ch - ph) // 2, (cw - pw) // 2
    patch = crop[py : py + ph, px : px + pw].astype(np.float32)
    gx, gy = round(hyp.x) + px, round(hyp.y) + py  # where the patch should sit in the source
    x0, y0 = max(0, gx - r), max(0, gy - r)
    region = src[y0 : min(src.shape[0], gy + ph + r), x0 : min(src.shape[1], gx + pw + r)]
    if region.shape[0] < ph or region.shape[1] < pw:
        return None
    _, _, loc, _ = cv2.minMaxLoc(cv2.matchTemplate(region.astype(np.float32), patch, cv2.TM_SQDIFF))
    x, y = x0 + loc[0] - px, y0 + loc[1] - py
    if x < 0 or y < 0 or x + cw > src.shape[1] or y + ch > src.shape[0]:
        return None
    cut = src[y : y + ch, x : x + cw]
    mad = float(cv2.absdiff(cut, crop).mean())
    if mad > settings.crop_exact_tolerance:
        return None
    return CropMatch(
        box=Box(float(x), float(y), float(cw), float(ch)),
        quality=_ncc(crop, cut),
        exact=True,
        scale=(1.0, 1.0),
        aspect_error=_aspect_error(cw, ch, src),
        method="exact",
        source_size=(src.shape[1], src.shape[0]),
    )


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    a64 -= a64.mean()
    b64 -= b64.mean()
    den = float(np.linalg.norm(a64) * np.linalg.norm(b64))
    if den == 0.0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(np.dot(a64, b64) / den)


def _aspect_error(w: float, h: float, src: np.ndarray) -> float:
    return abs((w / h) / (src.shape[1] / src.shape[0]) - 1.0)


def _ecc(crop: np.ndarray, src: np.ndarray, hyp: _Hypothesis) -> CropMatch | None:
    """Sub-pixel affine fit at the crop's own pixel density; None if ECC does not converge."""
    ch, cw = crop.shape
    s = cw / hyp.w  # crop pixels per source pixel
    g = min(1.0, s)  # source shrink: never compare against more detail than the crop has
    c = g / s  # crop shrink (only when the crop was upscaled)
    src_w = _shrink(src, g).astype(np.float32)
    crop_w = (_shrink(crop, c) if c < 1.0 else crop).astype(np.float32)
    g_x, g_y = src_w.shape[1] / src.shape[1], src_w.shape[0] / src.shape[0]
    c_x, c_y = crop_w.shape[1] / cw, crop_w.shape[0] / ch
    # Warp from crop-work pixel centres to source-work pixel centres (see module doc).
    a_x, a_y = g_x * hyp.w / (c_x * cw), g_y * hyp.h / (c_y * ch)
    warp = np.array(
        [[a_x, 0.0, g_x * hyp.x + 0.5 * a_x - 0.5], [0.0, a_y, g_y * hyp.y + 0.5 * a_y - 0.5]], dtype=np.float32
    )
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    try:
        # No extra Gaussian pre-blur (size 1): small crops have little detail to spare, and
        # blurring them let the 6-parameter fit drift by ~2 px on 100 px wide boxes.
        everywhere = np.ones(src_w.shape, dtype=np.uint8)
        quality, fitted = cv2.findTransformECC(crop_w, src_w, warp, cv2.MOTION_AFFINE, criteria, everywhere, 1)
    except cv2.error:
        return None
    a = np.asarray(fitted, dtype=np.float64)

    def to_src(ex: float, ey: float) -> tuple[float, float]:
        # crop edge coords -> crop-work centres -> source-work centres -> source edge coords
        px, py = ex * c_x - 0.5, ey * c_y - 0.5
        qx = a[0, 0] * px + a[0, 1] * py + a[0, 2]
        qy = a[1, 0] * px + a[1, 1] * py + a[1, 2]
        return (qx + 0.5) / g_x, (qy + 0.5) / g_y

    (x0, y0), (x1, y1) = to_src(0.0, 0.0), to_src(float(cw), float(ch))
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return None
    return CropMatch(
        box=Box(x0, y0, w, h),
        quality=float(quality),
        exact=False,
        scale=(cw / w, ch / h),
        aspect_error=_aspect_error(w, h, src),
        method="ecc",
        source_size=(src.shape[1], src.shape[0]),
    )


def _fine(c: np.ndarray, s: np.ndarray, coarse: list[_Hypothesis], settings: LabelSettings) -> CropMatch | None:
    # Only coarse peaks close to the best deserve refining.
    hyps = [_medium(c, s, h, settings) for h in coarse if h.score >= coarse[0].score - _REFINE_MARGIN]
    if not hyps:
        return None
    best = max(hyps, key=lambda hyp: hyp.score)
    exact = _try_exact(c, s, best, settings)
    if exact is not None:
        return exact
    fitted = _ecc(c, s, best)
    if fitted is not None and fitted.quality >= best.score:
        return fitted
    # ECC failed to converge or did worse than the grid: report the grid estimate as such.
    return CropMatch(
        box=Box(best.x, best.y, best.w, best.h),
        quality=best.score,
        exact=False,
        scale=(c.shape[1] / best.w, c.shape[0] / best.h),
        aspect_error=_aspect_error(best.w, best.h, s),
        method="template",
        source_size=(s.shape[1], s.shape[0]),
    )


def recover_crop(crop: np.ndarray, source: np.ndarray, settings: LabelSettings) -> CropMatch | None:
    """The crop box of `crop` within `source`, or None when no placement fits at all.

    Callers judge `quality` against `settings.crop_min_quality` (match_crop does).
    """
    c, s = _gray(crop), _gray(source)
    if float(c.std()) < _FLAT_STD:
        return None  # a flat crop fits anywhere, so it matches nowhere
    return _fine(c, s, _coarse(c, s, settings), settings)


def _ranked(c: np.ndarray, grays: list[np.ndarray], settings: LabelSettings) -> list[tuple[int, list[_Hypothesis]]]:
    found = [(i, _coarse(c, g, settings)) for i, g in enumerate(grays)]
    return sorted(found, key=lambda t: -(t[1][0].score if t[1] else -1.0))


def rank_sources(crop: np.ndarray, sources: Sequence[np.ndarray], settings: LabelSettings) -> list[tuple[int, float]]:
    """Candidate indices with their coarse evidence (best correlation), best first: the fast prefilter."""
    ranked = _ranked(_gray(crop), [_gray(s) for s in sources], settings)
    return [(i, hyps[0].score if hyps else -1.0) for i, hyps in ranked]


def match_crop(crop: np.ndarray, sources: Sequence[np.ndarray], settings: LabelSettings) -> tuple[int, CropMatch]:
    """Pick the source of `crop` among `sources` and recover its box.

    The prefilter ranks all sources; the best gets the full recovery, and the next ones (up to
    `crop_full_candidates`) only while the best is not convincing or they ranked nearly as well.
    Raises CropNotMatchedError (path None: the caller knows the file) when no source reaches
    `settings.crop_min_quality`.
    """
    if not sources:
        raise CropNotMatchedError(None, "no candidate source images to match the crop against")
    c = _gray(crop)
    grays = [_gray(s) for s in sources]
    best: tuple[int, CropMatch] | None = None
    if float(c.std()) >= _FLAT_STD:
        ranked = _ranked(c, grays, settings)[: settings.crop_full_candidates]
        top_score = ranked[0][1][0].score if ranked[0][1] else -1.0
        for idx, hyps in ranked:
            score = hyps[0].score if hyps else -1.0
            convincing = best is not None and best[1].quality >= settings.crop_min_quality
            if convincing and score < top_score - _AMBIGUOUS_MARGIN:
                break
            m = _fine(c, grays[idx], hyps, settings)
            if m is not None and (best is None or m.quality > best[1].quality):
                best = (idx, m)
    if best is None or best[1].quality < settings.crop_min_quality:
        got = "no placement fits" if best is None else f"best correlation {best[1].quality:.3f}"
        raise CropNotMatchedError(
            None,
            f"crop matches none of {len(sources)} candidate(s): {got} < labels.crop_min_quality "
            f"{settings.crop_min_quality}",
        )
    return best
