"""Group loose inbox images into sets of up to N similar images.

Metadata first (same batch id, else same prompt), then visual similarity (pHash, or embeddings
when present), always within a time window of file modification times. The result depends only
on the images, so a restart recomputes the same sets; only *closing* depends on arrival time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.config import GroupingSettings


@dataclass(frozen=True)
class LooseImage:
    sha256: str
    name: str
    mtime: float  # file modification time: generation order, stable across restarts
    arrived: float  # when the daemon saw it ready (wall clock), used only for closing
    meta_key: str | None = None
    seed: int | None = None
    phash: int | None = None
    embedding: np.ndarray | None = None


@dataclass
class ProposedSet:
    members: list[LooseImage] = field(default_factory=list)
    basis: str = ""  # why these belong together
    closed: bool = False
    close_reason: str = ""

    @property
    def reason(self) -> str:
        return f"{self.basis}; closed: {self.close_reason}" if self.closed else self.basis


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def set_id_for(shas: Sequence[str]) -> str:
    """Content-derived id: the same images always make the same set, whatever the order."""
    return hashlib.sha256("\n".join(sorted(shas)).encode()).hexdigest()[:10]


def _visual_distance(a: LooseImage, b: LooseImage, cfg: GroupingSettings) -> tuple[bool, str, float]:
    if a.embedding is not None and b.embedding is not None:
        cos = float(np.dot(a.embedding, b.embedding))
        if cos >= cfg.embedding_min_cosine:
            return True, f"embedding cosine {cos:.2f} >= {cfg.embedding_min_cosine}", 1 - cos
    if a.phash is not None and b.phash is not None:
        d = hamming(a.phash, b.phash)
        if d <= cfg.phash_max_distance:
            return True, f"pHash distance {d} <= {cfg.phash_max_distance}", d / 64
    return False, "", 2.0


def _describe_meta(group: list[LooseImage]) -> str:
    key = group[0].meta_key or ""
    kind, _, value = key.partition(":")
    shown = value if len(value) <= 40 else value[:37] + "..."
    seeds = sorted(s for s in (m.seed for m in group) if s is not None)
    seed_txt = f" (seeds {seeds[0]}..{seeds[-1]})" if len(seeds) > 1 else ""
    return f"same {'batch id' if kind == 'batch' else 'prompt'} '{shown}'{seed_txt}"


def group_loose(images: Sequence[LooseImage], cfg: GroupingSettings, now: float) -> list[ProposedSet]:
    ordered = sorted(images, key=lambda i: (i.mtime, i.name, i.sha256))
    groups: list[ProposedSet] = []
    open_groups: list[ProposedSet] = []
    for img in ordered:
        in_window = [g for g in open_groups if abs(img.mtime - g.members[-1].mtime) <= cfg.time_window_seconds]
        chosen: ProposedSet | None = None
        if img.meta_key is not None:
            chosen = next((g for g in in_window if g.members[0].meta_key == img.meta_key), None)
            if chosen is not None:
                chosen.basis = _describe_meta([*chosen.members, img])
        if chosen is None:
            best: tuple[float, ProposedSet, str] | None = None
            for g in in_window:
                # A group made by metadata only takes images without conflicting metadata.
                if g.members[0].meta_key not in (None, img.meta_key):
                    continue
                for m in g.members:
                    ok, why, dist = _visual_distance(img, m, cfg)
                    if ok and (best is None or dist < best[0]):
                        best = (dist, g, f"visually similar to {m.name}: {why}")
            if best is not None:
                chosen = best[1]
                if not chosen.basis.startswith("same"):
                    chosen.basis = best[2]
        if chosen is None:
            chosen = ProposedSet(basis=_describe_meta([img]) if img.meta_key else "")
            groups.append(chosen)
            open_groups.append(chosen)
        chosen.members.append(img)
        if len(chosen.members) >= cfg.max_set_size:
            chosen.closed, chosen.close_reason = True, f"full ({len(chosen.members)} images)"
            open_groups.remove(chosen)
    for g in groups:
        if not g.basis:
            g.basis = "single image: nothing similar in the time window"
        if not g.closed:
            quiet = now - max(m.arrived for m in g.members)
            if quiet >= cfg.quiet_seconds:
                g.closed, g.close_reason = True, f"quiet for {quiet:.0f} s >= {cfg.quiet_seconds:g} s"
        if g.closed and len(g.members) == 1:
            g.close_reason += "; set of 1"
    return groups
