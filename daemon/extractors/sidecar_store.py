"""Persist extractor results: a DB row per (sha256, extractor, version) plus the sidecar files.

Files are named by sha256 (the image's identity), so renames and moves never orphan them:
sidecar/saliency/<sha>.npy, sidecar/hands/<sha>.keypoints.json, sidecar/det/<sha>.facefoot.json;
each extractor declares its own (`Extractor.outputs`), and this module reads nothing else.
Every file is written to a temporary name and renamed into place, so readers never see half a file.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Update, bindparam, select, update

from core.atomicfile import atomic_write
from core.config import Config
from core.extractors.base import Extractor, SidecarResult
from core.sidecar_types import POSE
from daemon.context import Ctx
from daemon.store import records
from daemon.store.schema import images, sidecars

FOOT_POINTS = ("left_ankle", "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index")


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


@functools.cache
def _set_column(key: str) -> Update:
    """The images column a `column` output fills, built once per column (it runs per image)."""
    return update(images).where(images.c.sha256 == bindparam("p_sha")).values({key: bindparam("p_value")})


def save_results(ctx: Ctx, conn: Connection, sha: str, results: Sequence[tuple[Extractor, SidecarResult]]) -> None:
    """One image's results from one pass: each declared output written once, files combining
    several extractors' results (facefoot) after all of them are stored."""
    for ext, result in results:
        save_result(ctx, conn, sha, ext, result)
    combined = {o for ext, _ in results for o in ext.outputs if o.kind == "facefoot"}
    for out in combined:
        _write_facefoot(ctx, conn, sha, out.path_under(ctx.cfg.path(out.folder), sha))


def save_result(ctx: Ctx, conn: Connection, sha: str, ext: Extractor, result: SidecarResult) -> None:
    """The row and the extractor's own declared outputs (combined ones: save_results)."""
    written: list[str] = []
    blob = None
    for out in ext.outputs:
        target = out.path_under(ctx.cfg.path(out.folder), sha) if out.file else None
        if out.kind == "blob" and out.key in result.arrays:
            blob = np.asarray(result.arrays[out.key], dtype="<f4").tobytes()
        elif out.kind == "column":
            conn.execute(_set_column(out.key), {"p_sha": sha, "p_value": result.payload[out.key]})
        elif target is None:
            continue
        elif out.kind == "json":
            atomic_write(target, json.dumps(result.payload, indent=1).encode())
        elif out.kind == "npy" and out.key in result.arrays:
            atomic_write(target, _npy_bytes(result.arrays[out.key]))
        elif out.kind == "bytes" and out.key in result.arrays:
            atomic_write(target, np.asarray(result.arrays[out.key], dtype=np.uint8).tobytes())
        else:  # facefoot (save_results), or an array this result does not have
            continue
        if target is not None:
            written.append(ctx.rel(target))
    records.upsert(
        conn,
        sidecars,
        {
            "sha256": sha,
            "extractor": ext.name,
            "version": ext.version,
            "payload": json.dumps(result.payload),
            "blob": blob,
            "files": json.dumps(written),
            "created_at": time.time(),
        },
        ["sha256", "extractor", "version"],
    )


def latest_payload(conn: Connection, sha: str, extractor: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(sidecars.c.payload)
        .where(sidecars.c.sha256 == sha, sidecars.c.extractor == extractor)
        .order_by(sidecars.c.version.desc())
        .limit(1)
    ).first()
    return json.loads(row.payload) if row else None


def stored_result(
    cfg: Config, conn: Connection, sha: str, extractor: str, version: int | None = None
) -> SidecarResult | None:
    """A stored result as its extractor returned it (payload and arrays), for `version` or the
    newest; None when it is not stored whole (a missing array file means: compute it again)."""
    q = select(sidecars.c.payload, sidecars.c.blob).where(sidecars.c.sha256 == sha, sidecars.c.extractor == extractor)
    if version is not None:
        q = q.where(sidecars.c.version == version)
    row = conn.execute(q.order_by(sidecars.c.version.desc()).limit(1)).first()
    if row is None:
        return None
    arrays: dict[str, np.ndarray] = {}
    from core.extractors.registry import EXTRACTOR_CLASSES  # every extractor module: only when reading one back

    cls = EXTRACTOR_CLASSES.get(extractor)
    for out in cls.outputs if cls is not None else ():
        if out.kind == "blob" and row.blob is not None:
            arrays[out.key] = np.frombuffer(row.blob, dtype="<f4")
        elif out.kind == "npy":
            try:
                arrays[out.key] = np.load(out.path_under(cfg.path(out.folder), sha), allow_pickle=False)
            except (OSError, ValueError):
                return None
    return SidecarResult(json.loads(row.payload), arrays)


def _write_facefoot(ctx: Ctx, conn: Connection, sha: str, target: Path) -> None:
    """Face boxes and foot points together, as the seed plan's det/<image>.facefoot.json."""
    face = latest_payload(conn, sha, "face") or {}
    pose = latest_payload(conn, sha, "pose") or {}
    feet = []
    for p in pose.get("poses", []):
        lm = p["landmarks"]
        feet.append(
            {
                name: {"x": lm[POSE[name]][0], "y": lm[POSE[name]][1], "visibility": lm[POSE[name]][3]}
                for name in FOOT_POINTS
            }
        )
    doc = {"faces": face.get("faces", []), "feet": feet, "image_size": face.get("image_size") or pose.get("image_size")}
    atomic_write(target, json.dumps(doc).encode())
