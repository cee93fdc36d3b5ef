"""A synthetic library and a simulated user, for benchmarks/rank.py and the ranking tests.

Images get plausible sidecar payloads (quality, face, hands, pose, anomaly summary, dedup flag,
an embedding with low-rank structure). The user's taste is a hidden linear function of the
library-standardised base features plus a direction in embedding space; each choice adds Gumbel
noise of scale `noise`, which makes the choice a conditional logit in the true utility.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.rank.evaluate import Decision
from core.rank.features import BASE_FEATURES, FeatureSpace, ImageSignals
from core.rank.settings import PriorWeights

_W, _H = 1024, 1536


def _image(rng: np.random.Generator, basis: np.ndarray) -> ImageSignals:
    sharp = float(np.exp(rng.normal(5.0, 1.0)))
    quality = {
        "sharpness": sharp,
        "subject_sharpness": sharp * float(np.exp(rng.normal(0.3, 0.3))),
        "brightness": float(rng.uniform(0.25, 0.75)),
        "contrast": float(rng.uniform(0.1, 0.3)),
        "clipped_dark": float(rng.exponential(0.01)),
        "clipped_bright": float(rng.exponential(0.01)),
        "noise_sigma": float(rng.gamma(2.0, 1.0)),
        "brisque": float(rng.normal(30, 10)),
        "subject_fraction": float(rng.uniform(0.1, 0.7)),
    }
    faces = []
    if rng.random() < 0.9:
        s = float(rng.uniform(80, 400))
        faces.append({"box": {"x": 400.0, "y": 200.0, "w": s, "h": s}, "score": 0.9, "keypoints": [[0, 0]] * 6})
    hands = [
        {"landmarks": (rng.uniform(0, 1000, (21, 3))).tolist(), "handedness": "Left", "score": 0.8}
        for _ in range(int(rng.integers(0, 3)))
    ]
    pose = np.column_stack([rng.uniform(0, _W, 33), rng.uniform(0, _H, 33), np.zeros(33), rng.uniform(0, 1, 33)])
    count = int(rng.poisson(0.4))
    scores = rng.uniform(0.3, 1.0, count)
    anomaly = {
        "count": count,
        "score_sum": float(scores.sum()),
        "score_max": float(scores.max(initial=0.0)),
        "uncertain": bool(rng.random() < 0.05),
        "uncertain_regions": int(rng.poisson(0.3)),
        "parts": {"hands": float(scores.max(initial=0.0)), "limbs": 0.0, "feet": 0.0},
    }
    emb = rng.standard_normal(basis.shape[0]) @ basis + 0.3 * rng.standard_normal(basis.shape[1])
    return ImageSignals(
        quality=quality,
        face={"image_size": [_W, _H], "faces": faces},
        hands={"image_size": [_W, _H], "hands": hands},
        pose={"image_size": [_W, _H], "poses": [{"landmarks": pose.tolist()}]},
        anomaly=anomaly,
        near_duplicate=bool(rng.random() < 0.05),
        embedding=emb.astype(np.float32),
    )


@dataclass(frozen=True)
class SimulatedUser:
    base_weights: dict[str, float]  # on library-standardised base features
    look: np.ndarray  # taste direction in embedding space (unit)
    look_weight: float  # per library standard deviation of the look score
    look_mean: float
    look_std: float
    noise: float  # Gumbel scale of each choice

    def look_score(self, signals: Sequence[ImageSignals]) -> np.ndarray:
        embs = np.stack([np.asarray(s.embedding, dtype=np.float64) for s in signals])
        out: np.ndarray = (embs / np.linalg.norm(embs, axis=1, keepdims=True)) @ self.look
        return out

    def utilities(self, space: FeatureSpace, signals: Sequence[ImageSignals]) -> np.ndarray:
        x = space.transform(signals)
        u = np.zeros(len(signals))
        for name, w in self.base_weights.items():
            u += w * x[:, space.names.index(name)]
        return u + self.look_weight * (self.look_score(signals) - self.look_mean) / self.look_std


@dataclass(frozen=True)
class World:
    library: dict[str, ImageSignals]
    sets: list[tuple[str, ...]]  # member ids
    groups: list[str]
    user: SimulatedUser
    space: FeatureSpace  # standardisation the user's taste is expressed in


def make_world(
    n_sets: int, set_size: int = 4, seed: int = 0, noise: float = 0.5, sets_per_group: int = 3, emb_dim: int = 512
) -> World:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((6, emb_dim))
    library = {f"img{i:06d}": _image(rng, basis) for i in range(n_sets * set_size)}
    ids = list(library)
    sets = [tuple(ids[i * set_size : (i + 1) * set_size]) for i in range(n_sets)]
    groups = [f"prompt{i // sets_per_group}" for i in range(n_sets)]
    # Taste: the documented prior's direction (users do prefer sharp, clean images) plus a
    # personal part the prior cannot know.
    prior = PriorWeights().model_dump()
    names = [n for n, _ in BASE_FEATURES]
    w = {n: 1.5 * prior.get(n, 0.0) + float(rng.normal(0, 0.7)) for n in names}
    look = basis[0] / np.linalg.norm(basis[0])
    probe = SimulatedUser(w, look, 1.0, 0.0, 1.0, noise)
    scores = probe.look_score(list(library.values()))
    user = SimulatedUser(w, look, 1.0, float(scores.mean()), float(scores.std()), noise)
    space = FeatureSpace.fit(list(library.values()), 0, 2)
    return World(library, sets, groups, user, space)


def true_utilities(world: World) -> dict[str, float]:
    ids = list(world.library)
    u = world.user.utilities(world.space, [world.library[i] for i in ids])
    return dict(zip(ids, u.tolist(), strict=True))


def simulate_decisions(world: World, seed: int = 1) -> tuple[list[Decision], list[str]]:
    """The user's noisy pick for every set, and the true-utility argmax (for the ceiling)."""
    rng = np.random.default_rng(seed)
    util = true_utilities(world)
    decisions: list[Decision] = []
    best: list[str] = []
    for k, (members, group) in enumerate(zip(world.sets, world.groups, strict=True)):
        u = np.array([util[m] for m in members])
        noisy = u + world.user.noise * rng.gumbel(size=len(u))
        decisions.append(Decision(f"set{k:06d}", group, float(k), members, members[int(np.argmax(noisy))]))
        best.append(members[int(np.argmax(u))])
    return decisions, best
