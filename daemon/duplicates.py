"""Near-duplicate groups over the whole collection, stored so status and ranking can use them."""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete, insert, select, update

from core.dedup import DedupItem, near_duplicate_groups, rule_description
from daemon.context import Ctx
from daemon.store.schema import dup_groups, images, set_members, sidecars

# Above this many images the n x n comparison runs per window of consecutive (by mtime) images.
WINDOW = 2000


def refresh_duplicates(ctx: Ctx) -> int:
    """Recompute every group and the per-set near_duplicate_of marks; returns the number of groups."""
    clip = ctx.extractor("clip")
    embeddings_on = clip is not None and clip.availability().available
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(images.c.sha256, images.c.phash).where(images.c.phash.is_not(None), images.c.state == "present")
            .order_by(images.c.mtime)
        ).all()
        emb = {r.sha256: np.frombuffer(r.blob, dtype="<f4") for r in conn.execute(
            select(sidecars.c.sha256, sidecars.c.blob).where(sidecars.c.extractor == "clip", sidecars.c.blob.is_not(None)))}
        members = conn.execute(select(set_members.c.set_id, set_members.c.sha256, set_members.c.position)).all()
    items = [DedupItem(r.sha256, r.phash, emb.get(r.sha256)) for r in rows]
    groups: list[list[str]] = []
    step = WINDOW // 2
    for start in range(0, max(1, len(items) - step), step) if len(items) > WINDOW else [0]:
        groups.extend(near_duplicate_groups(items[start : start + WINDOW], ctx.cfg.dedup))
    # Windows overlap: merge groups that share a member.
    merged: dict[str, str] = {}
    for g in groups:
        root = min(merged.get(s, s) for s in g)
        for s in g:
            merged[s] = root
    rule = rule_description(ctx.cfg.dedup, embeddings_on)
    by_set: dict[str, list[tuple[int, str]]] = {}
    for m in members:
        by_set.setdefault(m.set_id, []).append((m.position, m.sha256))
    with ctx.store.write() as conn:
        conn.execute(delete(dup_groups))
        for sha, gid in merged.items():
            conn.execute(insert(dup_groups).values(sha256=sha, group_id=gid, rule=rule))
        conn.execute(update(set_members).values(near_duplicate_of=None))
        for set_id, mem in by_set.items():
            first_of_group: dict[str, str] = {}
            for _pos, sha in sorted(mem):
                found = merged.get(sha)
                if found is None:
                    continue
                gid = found
                if gid in first_of_group:
                    conn.execute(update(set_members).where(set_members.c.set_id == set_id, set_members.c.sha256 == sha)
                                 .values(near_duplicate_of=first_of_group[gid]))
                else:
                    first_of_group[gid] = sha
    return len(set(merged.values()))
