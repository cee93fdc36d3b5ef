"""BRISQUE no-reference quality score, re-implemented on numpy/cv2 with the brisque 0.2.0 model.

The `brisque` wheel is installed without its dependencies (scikit-image, libsvm, requests), so
its code cannot run; only its model files are used. Features follow brisque/brisque.py exactly:
MSCN coefficients with a 7x7 Gaussian (sigma 7/6, zero padding as `convolve2d(..., 'same')`),
asymmetric generalised Gaussian fits of the MSCN map and its four neighbour products, at full
and half scale (bicubic), 18 + 18 features. The score is libsvm's epsilon-SVR decision value
with an RBF kernel, sum(coef_i * exp(-gamma * |sv_i - x|^2)) - rho, computed from svm.txt.

normalize.pickle holds only a dict of float lists; it is read with an unpickler whose
`find_class` refuses every global, so the file cannot name a callable to run. Lower scores
mean better quality (roughly 0-100; outside that range for very unusual images).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.errors import ModelUnavailableError

KERNEL_SIZE = 7
KERNEL_SIGMA = 7 / 6
MSCN_C = 1 / 255
# |MSCN| below this is rounding noise over perfectly flat pixels (real values from 8-bit images
# are >= ~1e-4). It is snapped to 0 because the AGGD fit splits values at 0: left as noise, the
# sign of flat areas - a third of some generated images - would depend on the platform's
# floating-point summation order, and move the score by up to half a point.
FLAT_EPS = 1e-9
N_FEATURES = 36
FIX = "reinstall brisque==0.2.0 (--no-deps) with scripts/bootstrap"


class _NoGlobalsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"normalize.pickle may not reference {module}.{name}")


def load_normalize(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(min_, max_) feature ranges from brisque's normalize.pickle, without executing anything."""
    try:
        data = _NoGlobalsUnpickler(io.BytesIO(path.read_bytes())).load()
        lo = np.asarray([float(v) for v in data["min_"]], dtype=np.float64)
        hi = np.asarray([float(v) for v in data["max_"]], dtype=np.float64)
    except (OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as e:
        raise ModelUnavailableError(path, f"cannot read BRISQUE normalisation: {e}", FIX) from e
    if lo.shape != (N_FEATURES,) or hi.shape != (N_FEATURES,):
        raise ModelUnavailableError(path, f"expected {N_FEATURES} ranges, got {lo.shape} / {hi.shape}", FIX)
    return lo, hi


@dataclass(frozen=True)
class SvrModel:
    gamma: float
    rho: float
    coef: np.ndarray  # (n_sv,)
    sv: np.ndarray  # (n_sv, N_FEATURES)

    def predict(self, x: np.ndarray) -> float:
        d2 = np.sum((self.sv - x[None, :]) ** 2, axis=1)
        return float(self.coef @ np.exp(-self.gamma * d2) - self.rho)


def load_svr(path: Path) -> SvrModel:
    """Parse a libsvm text model (epsilon-SVR, RBF kernel); sparse rows are zero where omitted."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
        header: dict[str, str] = {}
        i = 0
        while lines[i].strip() != "SV":
            key, _, value = lines[i].partition(" ")
            header[key] = value.strip()
            i += 1
        if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
            raise ValueError(f"expected epsilon_svr with rbf kernel, got {header}")
        rows = [ln.split() for ln in lines[i + 1 :] if ln.strip()]
        sv = np.zeros((len(rows), N_FEATURES), dtype=np.float64)
        coef = np.empty(len(rows), dtype=np.float64)
        for r, parts in enumerate(rows):
            coef[r] = float(parts[0])
            for item in parts[1:]:
                idx, _, val = item.partition(":")
                sv[r, int(idx) - 1] = float(val)
        return SvrModel(float(header["gamma"]), float(header["rho"]), coef, sv)
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise ModelUnavailableError(path, f"cannot parse the BRISQUE SVR model: {e}", FIX) from e


@lru_cache(maxsize=1)
def _gaussian_1d() -> np.ndarray:
    """brisque.py's normalised 7x7 Gaussian is the outer product of this with itself, so the
    filter runs separably (twice as fast) with the same result to rounding."""
    x = np.arange(KERNEL_SIZE) - KERNEL_SIZE // 2
    k: np.ndarray = np.exp(-(x**2) / (2 * KERNEL_SIGMA**2))
    k /= k.sum()
    return k


def _blur(img: np.ndarray) -> np.ndarray:
    k = _gaussian_1d()
    out: np.ndarray = cv2.sepFilter2D(img, cv2.CV_64F, k, k, borderType=cv2.BORDER_CONSTANT)
    return out


def mscn(gray: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a float64 grey image in [0, 1]."""
    mu = _blur(gray)
    mu_sq = _blur(gray * gray)
    sigma = np.sqrt(np.abs(mu * mu - mu_sq))
    out: np.ndarray = (gray - mu) / (sigma + MSCN_C)
    out[np.abs(out) < FLAT_EPS] = 0.0
    return out


def _phi(alpha: float) -> float:
    from scipy import special  # scipy costs `run` and `scan` a second of start-up: loaded on first use

    return float(special.gamma(2 / alpha) ** 2 / (special.gamma(1 / alpha) * special.gamma(3 / alpha)))


# phi rises monotonically from 0 towards 0.75; the bracket covers every alpha the model was
# trained on (0.34-10 in normalize.pickle) with room either side.
_ALPHA_LO, _ALPHA_HI = 0.05, 40.0


def aggd_fit(x: np.ndarray) -> tuple[float, float, float, float]:
    """(alpha, mean, sigma_l, sigma_r) of an asymmetric generalised Gaussian, moment-matched."""
    from scipy import optimize, special

    # Split into negative and non-negative parts once; dot products then give every sum in a
    # single BLAS pass (masked reductions were half of BRISQUE's time).
    x = np.ascontiguousarray(x, dtype=np.float64).ravel()
    xn = np.minimum(x, 0.0)
    xp = x - xn
    n_neg = int(np.count_nonzero(xn))
    n_pos = x.size - n_neg
    left_sq, right_sq = float(xn @ xn), float(xp @ xp)
    sigma_l = np.sqrt(left_sq / max(n_neg, 1))
    sigma_r = np.sqrt(right_sq / max(n_pos, 1))
    mean_sq = (left_sq + right_sq) / x.size
    if mean_sq <= 0 or sigma_r <= 0:
        raise ValueError("flat image: no contrast to model")
    gamma = sigma_l / sigma_r
    r_hat = ((float(xp.sum()) - float(xn.sum())) / x.size) ** 2 / mean_sq
    big_r = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    lo, hi = _phi(_ALPHA_LO) - big_r, _phi(_ALPHA_HI) - big_r
    if lo >= 0:
        alpha = _ALPHA_LO
    elif hi <= 0:
        alpha = _ALPHA_HI
    else:
        alpha = float(optimize.brentq(lambda a: _phi(a) - big_r, _ALPHA_LO, _ALPHA_HI, xtol=1e-12))
    const = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sigma_r - sigma_l) * const * special.gamma(2 / alpha) / special.gamma(1 / alpha)
    return alpha, float(mean), float(sigma_l), float(sigma_r)


def scale_features(gray: np.ndarray) -> np.ndarray:
    """The 18 features of one scale."""
    m = mscn(gray)
    alpha, _, sl, sr = aggd_fit(m)
    feats = [alpha, (sl**2 + sr**2) / 2]
    for prod in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        a, mean, sl, sr = aggd_fit(prod)
        feats += [a, mean, sl**2, sr**2]
    return np.asarray(feats, dtype=np.float64)


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """36 features of a float64 grey image in [0, 1] (at least 8x8 pixels)."""
    if min(gray.shape) < 8:
        raise ValueError(f"image {gray.shape[1]}x{gray.shape[0]} is too small for BRISQUE (needs 8x8)")
    half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    return np.concatenate([scale_features(gray), scale_features(half)])


class Brisque:
    """Loads the model files once; `score` is thread-safe (read-only state)."""

    def __init__(self, model_dir: Path) -> None:
        self.svr = load_svr(model_dir / "svm.txt")
        self.lo, self.hi = load_normalize(model_dir / "normalize.pickle")

    def normalise(self, feats: np.ndarray) -> np.ndarray:
        out: np.ndarray = -1 + 2.0 / (self.hi - self.lo) * (feats - self.lo)
        return out

    def score_features(self, feats: np.ndarray) -> float:
        return self.svr.predict(self.normalise(feats))

    def score(self, gray: np.ndarray) -> float:
        return self.score_features(brisque_features(gray))
