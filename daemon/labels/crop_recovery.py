"""The I/O half of core.labels.crop_recovery: a new file in cropped/ is matched to the member it
was cropped from (to_crop/ first, then recently approved images), and the match is stored for the
decision rule (daemon.labels.decide) to read."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from sqlalchemy import insert, select

from core.errors import BestshotError, NotReadyError
from core.imaging import load
from core.labels.crop_recovery import CropMatch, CropNotMatchedError, match_crop
from core.layout import locate
from core.sidecar_types import Box
from daemon.context import Ctx
from daemon.store import records
from daemon.store.schema import crops, images, observations, set_members

log = logging.getLogger(__name__)

MAX_CROP_CANDIDATES = 32
EXCELLENT_MATCH = 0.99  # stop looking once a source explains the crop this well


def match_user_crop(ctx: Ctx, path: Path, sha: str) -> str | None:
    """A file in cropped/ whose content is not a known image is the user's crop: find its source
    among the sets' members and record the match. Returns the source's set id (to be decided
    again), or None when it is no crop, is matched already, or matches nothing (recorded)."""
    if locate(ctx.cfg, path).area != "cropped":
        return None
    with ctx.store.read() as conn:
        if conn.execute(select(crops.c.crop_sha256).where(crops.c.crop_sha256 == sha)).first():
            return None
        candidates = conn.execute(
            select(images.c.sha256, images.c.path, set_members.c.set_id)
            .join(set_members, set_members.c.sha256 == images.c.sha256)
            .where(images.c.state == "present")
        ).all()
    # Most likely sources: images the user put in to_crop/, then recently approved ones, newest
    # first and bounded, decoded one at a time (never every winner ever).
    with ctx.store.read() as conn:
        moved = dict(conn.execute(select(observations.c.sha256, observations.c.moved_at)).all())
    area = {r.path: locate(ctx.cfg, ctx.abs(r.path)).area for r in candidates}
    ranked = sorted(
        (r for r in candidates if area[r.path] in ("to_crop", "approved")),
        key=lambda r: (area[r.path] != "to_crop", -moved.get(r.sha256, 0.0)),
    )
    ranked = ranked[:MAX_CROP_CANDIDATES]
    rel = ctx.rel(path)
    try:
        crop = load(path, max_pixels=ctx.cfg.ingest.max_pixels)
    except NotReadyError:
        return None  # still being written: its next event (or the reconcile) comes back here
    except BestshotError as e:
        with ctx.store.write() as conn:
            records.record_error(conn, rel, "crop_match", e, sha)
        return None
    best: tuple[int, CropMatch] | None = None
    for i, r in enumerate(ranked):
        try:
            source = load(ctx.abs(r.path), max_pixels=ctx.cfg.ingest.max_pixels)
            _, match = match_crop(crop.rgb, [source.rgb], ctx.cfg.labels)
        except BestshotError:
            continue
        if best is None or match.quality > best[1].quality:
            best = (i, match)
        if match.quality >= EXCELLENT_MATCH:
            break
    if best is None:
        with ctx.store.write() as conn:
            records.record_error(
                conn,
                rel,
                "crop_match",
                CropNotMatchedError(
                    path, f"no image in to_crop/ or approved/ (of {len(ranked)} tried) contains this crop"
                ),
                sha,
            )
        return None
    idx, match = best
    src = ranked[idx]
    with ctx.store.write() as conn:
        conn.execute(
            insert(crops).values(
                crop_sha256=sha,
                file=rel,
                source_sha256=src.sha256,
                match=json.dumps(match_to_dict(match)),
                observed_at=time.time(),
            )
        )
        records.resolve_errors(conn, rel)
    log.info("crop %s matched %s (quality %.3f, %s)", rel, src.path, match.quality, match.method)
    return str(src.set_id)


def match_to_dict(m: CropMatch) -> dict[str, object]:
    return {
        "box": m.box.to_dict(),
        "quality": m.quality,
        "exact": m.exact,
        "scale": list(m.scale),
        "aspect_error": m.aspect_error,
        "method": m.method,
        "source_size": list(m.source_size),
    }


def match_from_dict(d: dict[str, object]) -> CropMatch:
    scale = d["scale"]
    size = d["source_size"]
    assert isinstance(scale, list) and isinstance(size, list) and isinstance(d["box"], dict)
    return CropMatch(
        box=Box.from_dict(d["box"]),
        quality=float(d["quality"]),  # type: ignore[arg-type]
        exact=bool(d["exact"]),
        scale=(float(scale[0]), float(scale[1])),
        aspect_error=float(d["aspect_error"]),  # type: ignore[arg-type]
        method=d["method"],  # type: ignore[arg-type]
        source_size=(int(size[0]), int(size[1])),
    )
