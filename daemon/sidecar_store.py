"""Persist extractor results: a DB row per (sha256, extractor, version) plus the sidecar files.

Files are named by sha256 (the image's identity), so renames and moves never orphan them:
sidecar/saliency/<sha>.npy, sidecar/hands/<sha>.keypoints.json, sidecar/det/<sha>.facefoot.json.
Every file is written to a temporary name and renamed into place, so readers never see half a file.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from sqlalchemy import Connection, select, update

from core.atomicfile import atomic_write
from core.config import Config
from core.extractors.base import Extractor, SidecarResult
from core.sidecar_types import POSE
from daemon import records
from daemon.context import Ctx
from daemon.store.schema import images, sidecars

FOOT_POINTS = ("left_ankle", "right_ankle", "left_heel", "right_heel", "left_foot_index", "right_foot_index")


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def save_result(ctx: Ctx, conn: Connection, sha: str, ext: Extractor, result: SidecarResult) -> None:
    side = ctx.cfg.path("sidecar")
    written: list[str] = []
    blob = None
    for key, arr in result.arrays.items():
        if key == "embedding":
            blob = np.asarray(arr, dtype="<f4").tobytes()
        elif key == "preview_jpeg":
            target = ctx.cfg.path("labels") / "crops" / f"{sha}.crop.jpg"
            atomic_write(target, np.asarray(arr, dtype=np.uint8).tobytes())
            written.append(ctx.rel(target))
        else:
            target = side / ext.name / f"{sha}.npy"
            atomic_write(target, _npy_bytes(arr))
            written.append(ctx.rel(target))
    json_file = {
        "hands": side / "hands" / f"{sha}.keypoints.json",
        "anomalies": side / "anomalies" / f"{sha}.json",
        "crop": ctx.cfg.path("labels") / "crops" / f"{sha}.crop.json",
    }.get(ext.name)
    if json_file is not None:
        atomic_write(json_file, json.dumps(result.payload, indent=1).encode())
        written.append(ctx.rel(json_file))
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
    if ext.name in ("face", "pose"):
        _write_facefoot(ctx, conn, sha)
    if ext.name == "phash":  # grouping and near-duplicates read it from the image row
        conn.execute(update(images).where(images.c.sha256 == sha).values(phash=result.payload["phash"]))


def latest_payload(conn: Connection, sha: str, extractor: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(sidecars.c.payload)
        .where(sidecars.c.sha256 == sha, sidecars.c.extractor == extractor)
        .order_by(sidecars.c.version.desc())
        .limit(1)
    ).first()
    return json.loads(row.payload) if row else None


# The one array an extractor may keep as sidecar/<extractor>/<sha>.npy, by its key in SidecarResult.
_NPY_KEYS = {"saliency": "subject", "hand_clip": "embeddings", "regions": "descriptors"}


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
    if row.blob is not None:
        arrays["embedding"] = np.frombuffer(row.blob, dtype="<f4")
    key = _NPY_KEYS.get(extractor)
    if key is not None:
        npy = cfg.path("sidecar") / extractor / f"{sha}.npy"
        try:
            arrays[key] = np.load(npy, allow_pickle=False)
        except (OSError, ValueError):
            return None
    return SidecarResult(json.loads(row.payload), arrays)


def _write_facefoot(ctx: Ctx, conn: Connection, sha: str) -> None:
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
    atomic_write(ctx.cfg.path("sidecar") / "det" / f"{sha}.facefoot.json", json.dumps(doc).encode())
