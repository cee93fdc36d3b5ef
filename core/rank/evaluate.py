"""Honest evaluation: group-wise held-out splits, a rolling recent slice, top-1 agreement, log-loss.

A group is whatever makes sets near-copies of each other (the prompt, a person cluster): a model
that saw one set of a prompt would be judged too kindly on its siblings, so groups are never cut.
Held-out groups are chosen by a salted hash of the group key, so the same groups stay held out
across every retrain and old and new models are compared on data neither has seen.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.rank.features import ImageSignals
from core.rank.model import Choice, RankModel

_NO_SIGNALS = ImageSignals()


@dataclass(frozen=True)
class Decision:
    """One decided set: `members` are image ids (sha256), `winner` one of them; ts in unix seconds."""

    set_id: str
    group: str
    ts: float
    members: tuple[str, ...]
    winner: str

    def __post_init__(self) -> None:
        if self.winner not in self.members:
            raise ValueError(f"set {self.set_id}: winner {self.winner} is not a member")


def latest_decisions(decisions: Iterable[Decision]) -> list[Decision]:
    """A correction supersedes earlier records of the same set; result sorted by time."""
    last: dict[str, Decision] = {}
    for d in sorted(decisions, key=lambda d: d.ts):
        last[d.set_id] = d
    return sorted(last.values(), key=lambda d: (d.ts, d.set_id))


def is_heldout_group(group: str, fraction: float, salt: str) -> bool:
    h = hashlib.sha256(f"{salt}\0{group}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


@dataclass(frozen=True)
class Split:
    train: list[Decision]
    heldout: list[Decision]


def group_split(decisions: Sequence[Decision], fraction: float, salt: str) -> Split:
    held = [is_heldout_group(d.group, fraction, salt) for d in decisions]
    return Split(
        [d for d, h in zip(decisions, held, strict=True) if not h],
        [d for d, h in zip(decisions, held, strict=True) if h],
    )


def recent_split(decisions: Sequence[Decision], n: int) -> Split:
    """Held out: the newest `n` decisions. Train: older ones from groups not in the slice."""
    ordered = sorted(decisions, key=lambda d: (d.ts, d.set_id))
    recent = ordered[-n:] if n > 0 else []
    recent_groups = {d.group for d in recent}
    cut = len(ordered) - len(recent)
    return Split([d for d in ordered[:cut] if d.group not in recent_groups], recent)


def set_matrix(model: RankModel, decision: Decision, signals: Mapping[str, ImageSignals]) -> np.ndarray:
    """Features of a set's members in the model's own space (an unknown image counts as all-missing)."""
    return model.space.transform([signals.get(m, _NO_SIGNALS) for m in decision.members])


def to_choices(decisions: Sequence[Decision], x_by_image: Mapping[str, np.ndarray]) -> list[Choice]:
    return [
        Choice(np.stack([x_by_image[m] for m in d.members]), d.members.index(d.winner))
        for d in decisions
        if len(d.members) > 1
    ]


@dataclass(frozen=True)
class Metrics:
    """`n` scored sets (sets of one are not choices); top1/log_loss are None when n == 0."""

    n: int
    top1: float | None
    log_loss: float | None
    chance_top1: float | None  # what picking at random would score on the same sets

    def to_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "top1": self.top1, "log_loss": self.log_loss, "chance_top1": self.chance_top1}


def evaluate(
    model: RankModel,
    decisions: Sequence[Decision],
    signals: Mapping[str, ImageSignals],
    samples: int = 512,
    x_by_image: Mapping[str, np.ndarray] | None = None,
) -> Metrics:
    """Top-1 agreement and log-loss of `model` on `decisions`.

    `x_by_image`: rows already standardised in `model.space` (saves re-parsing payloads).
    """
    hits: list[float] = []
    losses: list[float] = []
    chance: list[float] = []
    for d in decisions:
        if len(d.members) < 2:
            continue
        x = np.stack([x_by_image[m] for m in d.members]) if x_by_image is not None else set_matrix(model, d, signals)
        pred = model.predict(x, samples)
        w = d.members.index(d.winner)
        hits.append(float(int(np.argmax(pred.probabilities)) == w))
        losses.append(-math.log(max(float(pred.probabilities[w]), 1e-12)))
        chance.append(1.0 / len(d.members))
    if not hits:
        return Metrics(0, None, None, None)
    return Metrics(len(hits), float(np.mean(hits)), float(np.mean(losses)), float(np.mean(chance)))


def not_worse(new: Metrics, old: Metrics) -> bool:
    """On the same held-out sets: top-1 agreement at least as high and log-loss no higher. Top-1 on a
    few dozen sets moves in steps of several percent, so a model that merely ties it while stating
    worse probabilities (a higher log-loss) is not taken for an equal."""
    if new.top1 is None or old.top1 is None:
        return old.top1 is None
    if new.top1 < old.top1:
        return False
    return new.log_loss is None or old.log_loss is None or new.log_loss <= old.log_loss + 1e-9


def describe_comparison(new: Metrics, old: Metrics, name: str) -> str:
    top = "<" if new.top1 is not None and old.top1 is not None and new.top1 < old.top1 else ">="
    loss = ""
    if new.log_loss is not None and old.log_loss is not None:
        cmp = ">" if new.log_loss > old.log_loss + 1e-9 else "<="
        loss = f", log-loss {new.log_loss:.3f} {cmp} {old.log_loss:.3f}"
    return f"held-out top-1 {new.top1:.3f} {top} {name} {old.top1:.3f}{loss} on {new.n} sets"


def should_switch(new: Metrics, old: Metrics | None, name: str = "current") -> tuple[bool, str]:
    """Switch only if the new model is not worse (`not_worse`) than `old` (called `name`) on the same
    held-out sets, and never on zero held-out sets."""
    if new.top1 is None:
        return False, "no held-out sets to judge it on: not switched in"
    if old is None:
        return True, f"no {name} model"
    if old.top1 is None:
        return True, f"held-out top-1 {new.top1:.3f} on {new.n} sets; nothing in force to compare with"
    return not_worse(new, old), describe_comparison(new, old, name)


def gate(new: Metrics, prior: Metrics, current: Metrics | None) -> tuple[bool, bool, str]:
    """(switch in, put the prior back, why) for a new model, all judged on the same held-out sets.

    The bar is the prior as well as the model in force: a model that merely beats a weak current
    one is not let in below the prior, and a current model the prior beats is retired for the prior
    unless the new one earns its place."""
    switch, reason = should_switch(new, prior, "prior")
    if current is None:
        return switch, False, reason
    if not_worse(current, prior):
        if not switch:
            return False, False, reason
        switch, reason = should_switch(new, current, "current")
        return switch, False, reason
    if switch or not new.n:
        return switch, False, reason
    return False, True, f"{reason}; the model in force ({describe_comparison(current, prior, 'prior')}) is retired"
