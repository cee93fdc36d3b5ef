"""What the user's decisions say about each decided image, for the models that learn per region
(core.anomaly.calibration, core.anomaly.hand_model), and the re-analysis a new model triggers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, func, select

from core.anomaly.calibration import Role
from core.labels.session import parse_line
from core.layout import from_db_path
from core.review.regions import RegionLabel, merge
from core.sidecar_types import Box
from daemon.context import Ctx
from daemon.extractors.jobs import JobSpec, enqueue
from daemon.store.schema import decisions, images, set_members, sets


@dataclass(frozen=True)
class DecidedImage:
    set_id: str
    sha256: str
    role: Role
    crop_box: Box | None  # the winner's crop, in its original pixels
    tags: tuple[str, ...]  # the user's tags on this image
    # What the user said about single regions of this image (review page), from every line of
    # its set: a later decision made in Finder does not unsay them.
    regions: tuple[RegionLabel, ...] = ()


def _region_labels(conn: Connection, set_id: str) -> dict[str, tuple[RegionLabel, ...]]:
    merged: tuple[RegionLabel, ...] = ()
    rows = conn.execute(
        select(decisions.c.line)
        .where(decisions.c.set_id == set_id, decisions.c.line.like('%"region_labels"%'))
        .order_by(decisions.c.id)
    )
    for (line,) in rows:
        merged = merge(merged, parse_line(line, 1).region_labels)
    out: dict[str, tuple[RegionLabel, ...]] = {}
    for r in merged:
        out[r.image] = (*out.get(r.image, ()), r)
    return out


def decided_images(conn: Connection) -> Iterator[DecidedImage]:
    """Every member of the user's latest decision per set (observed or logged; the daemon's own
    batch decisions and retractions teach nothing). A winner sent to to_crop/ whose crop has not
    arrived says nothing yet (role "other")."""
    newest = select(func.max(decisions.c.id)).group_by(decisions.c.set_id)
    for d in conn.execute(select(decisions).where(decisions.c.id.in_(newest)).order_by(decisions.c.id)).all():
        if d.source == "batch" or d.closed_reason == "retracted":
            continue
        deleted = set(json.loads(d.deleted or "[]"))
        crop = Box.from_dict(json.loads(d.crop_box)) if d.crop_box else None
        image_tags: dict[str, list[str]] = (json.loads(d.line).get("bestshot") or {}).get("image_tags") or {}
        members = conn.execute(
            select(set_members.c.sha256, images.c.original_name)
            .join(images, images.c.sha256 == set_members.c.sha256)
            .where(set_members.c.set_id == d.set_id)
        ).all()
        regions = _region_labels(conn, d.set_id)
        for m in members:
            role: Role = "other"
            if m.sha256 == d.winner:
                role = "cropped" if crop is not None else ("other" if d.needs_crop else "approved")
            elif m.sha256 in deleted:
                role = "rejected"
            name = Path(from_db_path(m.original_name)).name
            tags = tuple(image_tags.get(name, []))
            crop_box = crop if m.sha256 == d.winner else None
            yield DecidedImage(d.set_id, m.sha256, role, crop_box, tags, regions.get(name, ()))


def reanalyse_open_sets(ctx: Ctx, conn: Connection) -> int:
    """Queue the anomaly report and crop of every image in an undecided set: cheap (stored
    detections are reused), and their sets are proposed again once done (ranking.ready_sets)."""
    specs = [JobSpec(e.name, e.version) for e in ctx.extractors if e.name in ("anomalies", "crop")]
    if not specs:
        return 0
    shas = [
        r.sha256
        for r in conn.execute(
            select(set_members.c.sha256).join(sets, sets.c.id == set_members.c.set_id).where(sets.c.status == "filed")
        )
    ]
    for sha in shas:
        enqueue(conn, sha, specs)
    return len(shas)
