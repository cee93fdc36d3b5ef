"""Near-duplicate groups over the whole collection, stored so status and ranking can use them.

Images are compared within a window of their neighbours by mtime (near-duplicates are made
together), so the work grows with the library, not with its square. After each batch of new
sidecars only the new images are compared with their neighbours (read from an index on arrival
order, so the cost follows the new images, not the library) and merged into the stored groups;
an image that left while in no group changes no group and is passed over. A full recomputation
runs the first time, when a grouped image left the library (its group may split), or when the
rule changes (embeddings became available).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Select, delete, func, insert, or_, select, tuple_, update

from core.dedup import DedupItem, near_duplicate_groups, near_duplicate_pairs, rule_description
from core.unionfind import UnionFind
from daemon.context import Ctx
from daemon.store import records
from daemon.store.schema import dup_groups, images, set_members, sidecars

log = logging.getLogger(__name__)

# Above this many images the n x n comparison runs per window of consecutive (by mtime) images;
# windows overlap by half, so any two images within WINDOW // 2 positions are compared.
WINDOW = 2000
_INPUTS = ("phash", "clip")  # the sidecars the rule reads
# {"seen": newest phash/clip sidecar time, "present": images compared, "departed": image_counts.departed,
#  "rule": str, "groups": how many groups are stored}
_STATE = "dedup_refresh"


@dataclass(frozen=True)
class DedupRefresh:
    mode: str  # "full" | "incremental" | "unchanged"
    groups: int
    changed: int  # images whose group changed


def refresh_duplicates(ctx: Ctx, *, full: bool = False) -> DedupRefresh:
    """Bring the groups and the per-set near_duplicate_of marks up to date."""
    clip = ctx.extractor("clip")
    rule = rule_description(ctx.cfg.dedup, clip is not None and clip.availability().available)
    with ctx.store.read() as conn:
        last: dict[str, Any] = records.get_state(conn, _STATE) or {}
        counts = records.image_count(conn)
        present = int(counts.hashed)
        new: list[Any] = []
        if not full and last:
            # The sidecars written since the last refresh: a range on ix_sidecars_created_at.
            fresh = conn.execute(
                select(sidecars.c.sha256, sidecars.c.created_at).where(
                    sidecars.c.created_at > last["seen"], sidecars.c.extractor.in_(_INPUTS)
                )
            ).all()
            seen = max([last["seen"], *(r.created_at for r in fresh)])
            since = sorted({r.sha256 for r in fresh})
            for chunk in (since[i : i + 900] for i in range(0, len(since), 900)):
                new += conn.execute(_hashed_among(chunk)).all()
        # Incremental when, under the same rule, the library grew and whatever left it was in no
        # group (a departure from a group would split it: that is recomputed in full).
        left = int(counts.departed) - int(last.get("departed", counts.departed))
        incremental = (
            bool(last)
            and not full
            and last.get("rule") == rule
            and last.get("present") == present - len(new) + left
            and (_none_left(conn, last, int(counts.departed)) or (left > 0 and _no_group_left(conn)))
        )
        before = _group_count(conn, last) if incremental else 0
        if incremental and not new and not left:
            return DedupRefresh("unchanged", before, 0)
        if not incremental:
            seen = (
                conn.execute(select(func.max(sidecars.c.created_at)).where(sidecars.c.extractor.in_(_INPUTS))).scalar()
                or 0.0
            )
        rows: Sequence[Any]
        if incremental:
            rows = _neighbourhoods(conn, new, present)
            # Only the groups the neighbourhood touches can change: the others are not read.
            stored = _groups_of(conn, [r.sha256 for r in rows])
        else:
            rows = conn.execute(_ordered()).all()
            stored = {r.sha256: r.group_id for r in conn.execute(select(dup_groups.c.sha256, dup_groups.c.group_id))}
    if incremental:
        merged = _merge_new(ctx, rows, {r.sha256 for r in new}, stored)
        groups = before - len(set(stored.values())) + len(set(merged.values()))
    else:
        merged = _full(ctx, rows)
        groups = len(set(merged.values()))
    with ctx.store.write() as conn:
        changed = _write(conn, stored, merged, rule, replace_rule=not incremental)
        records.put_state(
            conn,
            _STATE,
            {"seen": seen, "present": present, "departed": int(counts.departed), "rule": rule, "groups": groups},
        )
    out = DedupRefresh("incremental" if incremental else "full", groups, len(changed))
    log.debug("duplicates: %s", out)
    return out


def mark_filed_sets(ctx: Ctx, set_ids: Collection[str]) -> None:
    """The near-duplicate marks of sets filed after their images' groups were stored (a loose set
    closes after the extraction queue drained): refresh_duplicates finds nothing new for them."""
    if not set_ids:
        return
    with ctx.store.write() as conn:
        shas = [
            r.sha256 for r in conn.execute(select(set_members.c.sha256).where(set_members.c.set_id.in_(list(set_ids))))
        ]
        groups = {
            r.sha256: r.group_id
            for r in conn.execute(
                select(dup_groups.c.sha256, dup_groups.c.group_id).where(dup_groups.c.sha256.in_(shas))
            )
        }
        _mark_sets(conn, groups, set(set_ids))


# The images compared: present, with a pHash, in arrival order (ix_images_state_mtime holds all four).
_HASHED = (images.c.state == "present", images.c.phash.is_not(None))


def _ordered() -> Select[Any]:
    return (
        select(images.c.sha256, images.c.phash, images.c.mtime)
        .where(*_HASHED)
        .order_by(images.c.mtime, images.c.sha256)
    )


def _none_left(conn: Connection, last: Mapping[str, Any], departed: int) -> bool:
    """No image compared at the last refresh has left since (image_counts.departed, kept by the
    database). A state written before that count existed: every stored group member is looked up."""
    if "departed" in last:
        return bool(last["departed"] == departed)
    stored = [r.sha256 for r in conn.execute(select(dup_groups.c.sha256))]
    return _all_present(conn, stored)


def _no_group_left(conn: Connection) -> bool:
    """No stored group member has left: an image in no group leaves every group as it was. One
    pass over the group rows (a fraction of the library), run only in a refresh after a departure."""
    gone = conn.execute(
        select(dup_groups.c.sha256)
        .select_from(dup_groups.outerjoin(images, images.c.sha256 == dup_groups.c.sha256))
        .where(or_(images.c.sha256.is_(None), images.c.state != "present", images.c.phash.is_(None)))
        .limit(1)
    ).first()
    return gone is None


def _group_count(conn: Connection, last: Mapping[str, Any]) -> int:
    if "groups" in last:
        return int(last["groups"])
    return int(conn.execute(select(func.count(dup_groups.c.group_id.distinct()))).scalar_one())


def _groups_of(conn: Connection, shas: Sequence[str]) -> dict[str, str]:
    """Every member of the stored groups these images belong to (ix_dup_groups_group_id)."""
    gids: set[str] = set()
    for chunk in (shas[i : i + 900] for i in range(0, len(shas), 900)):
        gids.update(
            r.group_id for r in conn.execute(select(dup_groups.c.group_id).where(dup_groups.c.sha256.in_(chunk)))
        )
    ids = sorted(gids)
    out: dict[str, str] = {}
    for chunk in (ids[i : i + 900] for i in range(0, len(ids), 900)):
        out.update(
            (r.sha256, r.group_id)
            for r in conn.execute(
                select(dup_groups.c.sha256, dup_groups.c.group_id).where(dup_groups.c.group_id.in_(chunk))
            )
        )
    return out


def _hashed_among(shas: Sequence[str]) -> Select[Any]:
    """These images, where present with a pHash: looked up by their key. `|| ''` keeps SQLite off
    ix_images_state_mtime, which it prefers otherwise and which walks every present image (17 ms
    at 40,000 images, against 0.1 ms by key)."""
    return select(images.c.sha256, images.c.phash, images.c.mtime).where(
        images.c.sha256.in_(shas), images.c.state.concat("") == "present", images.c.phash.is_not(None)
    )


def _all_present(conn: Connection, shas: Sequence[str]) -> bool:
    found = 0
    for chunk in (shas[i : i + 900] for i in range(0, len(shas), 900)):
        found += len(conn.execute(_hashed_among(chunk)).all())
    return found == len(shas)


def _neighbourhoods(conn: Connection, new: Sequence[Any], present: int) -> list[Any]:
    """The new images and up to WINDOW // 2 images either side of each, in arrival order: two
    steps on the index per new image, whatever the library's size; or, when that would read more
    rows than the library holds (thousands of arrivals at once), one pass over the index."""
    if len(new) * WINDOW > present:
        return _neighbourhoods_in_one_pass(conn, new)
    half = WINDOW // 2
    key = tuple_(images.c.mtime, images.c.sha256)
    rows: dict[str, Any] = {}
    for r in new:
        rows[r.sha256] = r
        for cond, order in (
            (key < tuple_(r.mtime, r.sha256), (images.c.mtime.desc(), images.c.sha256.desc())),
            (key > tuple_(r.mtime, r.sha256), (images.c.mtime, images.c.sha256)),
        ):
            for n in conn.execute(_ordered().where(cond).order_by(None).order_by(*order).limit(half)):
                rows[n.sha256] = n
    return sorted(rows.values(), key=lambda r: (r.mtime, r.sha256))


def _neighbourhoods_in_one_pass(conn: Connection, new: Sequence[Any]) -> list[Any]:
    """What `_neighbourhoods` reads, by position in one ordered read of every compared image."""
    half = WINDOW // 2
    ordered = conn.execute(_ordered()).all()
    at = {r.sha256: i for i, r in enumerate(ordered)}
    keep = np.zeros(len(ordered) + 1, dtype=np.int64)  # +1 where a window starts, -1 past its end
    for r in new:
        i = at.get(r.sha256)
        if i is not None:
            keep[max(0, i - half)] += 1
            keep[min(len(ordered), i + half + 1)] -= 1
    covered = np.cumsum(keep[:-1]) > 0
    return [ordered[i] for i in np.flatnonzero(covered)]


def _items(ctx: Ctx, rows: Sequence[Any]) -> list[DedupItem]:
    shas = [r.sha256 for r in rows]
    emb: dict[str, np.ndarray] = {}
    with ctx.store.read() as conn:
        for chunk in (shas[i : i + 900] for i in range(0, len(shas), 900)):
            emb.update(
                (r.sha256, np.frombuffer(r.blob, dtype="<f4"))
                for r in conn.execute(
                    select(sidecars.c.sha256, sidecars.c.blob)
                    .where(sidecars.c.extractor == "clip", sidecars.c.blob.is_not(None), sidecars.c.sha256.in_(chunk))
                    .order_by(sidecars.c.version)
                )
            )
    return [DedupItem(r.sha256, r.phash, emb.get(r.sha256)) for r in rows]


def _windows(items: list[DedupItem], ctx: Ctx) -> list[list[str]]:
    groups: list[list[str]] = []
    step = WINDOW // 2
    for start in range(0, max(1, len(items) - step), step) if len(items) > WINDOW else [0]:
        groups.extend(near_duplicate_groups(items[start : start + WINDOW], ctx.cfg.dedup))
    return groups


def _union(groups: Iterable[Sequence[str]], start: Mapping[str, str] | None = None) -> dict[str, str]:
    """sha -> group id (the smallest sha of its group), joining groups that share a member."""
    uf: UnionFind[str] = UnionFind()
    for sha, gid in (start or {}).items():
        uf.join(sha, gid)
    for g in groups:
        for s in g[1:]:
            uf.join(g[0], s)
    return uf.roots()


def _full(ctx: Ctx, rows: Sequence[Any]) -> dict[str, str]:
    return _union(_windows(_items(ctx, rows), ctx))


def _merge_new(ctx: Ctx, rows: Sequence[Any], new: set[str], stored: Mapping[str, str]) -> dict[str, str]:
    """The stored groups joined with whatever the new images match among `rows` (their neighbours)."""
    items = _items(ctx, rows)
    # Only pairs with a new image: what the others share is in the stored groups already.
    of = [i for i, it in enumerate(items) if it.sha256 in new]
    return _union(near_duplicate_pairs(items, of, ctx.cfg.dedup), stored)


def _write(
    conn: Connection, stored: Mapping[str, str], merged: Mapping[str, str], rule: str, replace_rule: bool
) -> set[str]:
    """Rows of images whose group changed (all rows on a full refresh), and the near-duplicate
    marks of their sets; returns the shas whose group changed."""
    changed = {s for s in set(stored) | set(merged) if stored.get(s) != merged.get(s)}
    if replace_rule:
        conn.execute(delete(dup_groups))
        write = set(merged)
    else:
        if changed:
            conn.execute(delete(dup_groups).where(dup_groups.c.sha256.in_(list(changed))))
        write = changed & set(merged)
    if write:
        conn.execute(insert(dup_groups), [{"sha256": s, "group_id": merged[s], "rule": rule} for s in sorted(write)])
    if replace_rule:
        _mark_sets(conn, merged, None)
    elif changed:
        _mark_sets(
            conn,
            merged,
            {
                r.set_id
                for r in conn.execute(select(set_members.c.set_id).where(set_members.c.sha256.in_(list(changed))))
            },
        )
    return changed


def _mark_sets(conn: Connection, merged: Mapping[str, str], set_ids: set[str] | None) -> None:
    """near_duplicate_of: a member whose group an earlier member of its set already stands for
    names that member; rows are written only where the mark changes."""
    q = select(set_members.c.set_id, set_members.c.sha256, set_members.c.position, set_members.c.near_duplicate_of)
    if set_ids is not None:
        q = q.where(set_members.c.set_id.in_(list(set_ids)))
    by_set: dict[str, list[Any]] = {}
    for m in conn.execute(q):
        by_set.setdefault(m.set_id, []).append(m)
    for set_id, mem in by_set.items():
        first_of_group: dict[str, str] = {}
        for m in sorted(mem, key=lambda m: m.position):
            gid = merged.get(m.sha256)
            mark = None if gid is None else first_of_group.setdefault(gid, m.sha256)
            mark = None if mark == m.sha256 else mark
            if mark != m.near_duplicate_of:
                conn.execute(
                    update(set_members)
                    .where(set_members.c.set_id == set_id, set_members.c.sha256 == m.sha256)
                    .values(near_duplicate_of=mark)
                )
