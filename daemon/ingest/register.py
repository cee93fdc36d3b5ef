"""Image stages: a file in the inbox becomes a registered image (identity, facts, metadata).

Each stage takes the ImageTask and fills in more of it; raising a BestshotError stops the
task and is recorded against the path by daemon/ingest/stages.py, which lists the stages in order
(daemon/pipeline.py assembles them with everything after them). Nothing here moves or
modifies the file.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, update

from core.errors import DuplicateError, NotReadyError, TooLargeError, UnreadableError, VanishedError
from core.hashing import sha256_bytes
from core.imaging import DecodedImage, decode, read_bytes
from core.layout import Place, locate, to_db_path
from core.metadata import FOLDER_META_NAMES, ImageMeta, parse_metadata, sidecar_candidates
from daemon.context import Ctx
from daemon.extractors.jobs import JobSpec, enqueue
from daemon.ingest.prefetch import Prefetched
from daemon.store import records
from daemon.store.schema import image_metadata, images


@dataclass
class ImageTask:
    path: Path
    place: Place | None = None
    st: os.stat_result | None = None
    data: bytes | None = None
    sha256: str | None = None
    image: DecodedImage | None = None
    meta: ImageMeta | None = None
    outcome: str = "pending"  # registered | unchanged | duplicate | moved
    prefetched: Prefetched | None = None  # read, hashed and decoded ahead (scan): used if still current
    done: bool = False  # set by a stage that completes the task early


def stage_stat(ctx: Ctx, t: ImageTask) -> None:
    t.place = locate(ctx.cfg, t.path)
    try:
        st = os.lstat(t.path)
    except FileNotFoundError as e:
        raise VanishedError(t.path, "file disappeared before it could be read") from e
    except PermissionError as e:
        raise UnreadableError(t.path, "permission denied reading the file's attributes") from e
    if stat.S_ISLNK(st.st_mode):
        raise UnreadableError(t.path, "symbolic link: not followed; put the image file itself in the inbox")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableError(t.path, "not a regular file")
    if st.st_size == 0:
        raise NotReadyError(t.path, "file is empty (0 bytes)")
    if st.st_size > ctx.cfg.ingest.max_file_bytes:
        raise TooLargeError(
            t.path, f"{st.st_size} bytes exceeds ingest.max_file_bytes = {ctx.cfg.ingest.max_file_bytes}"
        )
    t.st = st


def stage_read(ctx: Ctx, t: ImageTask) -> None:
    assert t.st is not None
    rel = ctx.rel(t.path)
    with ctx.store.read() as conn:  # one read transaction for both look-ups, the hashing between them
        sha = records.known_file(conn, rel, t.st.st_size, t.st.st_mtime_ns)
        row = records.image_row(conn, sha) if sha else None
        if row is not None and row.path == rel:
            t.sha256, t.outcome, t.done = sha, "unchanged", True
            return
        pf = t.prefetched
        if pf is not None and (pf.size, pf.mtime_ns) == (t.st.st_size, t.st.st_mtime_ns):
            t.data, t.sha256 = pf.data, pf.sha256
        else:
            t.prefetched = None  # changed since it was read ahead
            t.data = read_bytes(t.path)
            t.sha256 = sha256_bytes(t.data)
        row = records.image_row(conn, t.sha256)
    if row is not None and row.path != rel:
        if ctx.abs(row.path).exists() and row.state == "present":
            raise DuplicateError(
                t.path,
                f"already in the library as {row.path} (same content, sha256 {t.sha256[:12]}); "
                "this copy was left where it is and can be deleted",
            )
        # Known content whose old location is gone: a rename or move we missed.
        with ctx.store.write() as conn:
            records.set_image_path(conn, t.sha256, rel)
            records.upsert_file(conn, rel, t.sha256, t.st.st_size, t.st.st_mtime_ns)
            records.resolve_errors(conn, rel)
        t.outcome, t.done = "moved", True


def stage_decode(ctx: Ctx, t: ImageTask) -> None:
    assert t.data is not None
    pf = t.prefetched
    if pf is not None and pf.data is t.data:  # these very bytes were decoded ahead
        if pf.error is not None:
            raise pf.error
        if pf.image is not None:
            t.image = pf.image
            return
    ing = ctx.cfg.ingest
    t.image = decode(
        t.path, t.data, max_pixels=ing.max_pixels, accept_formats=tuple(ing.accept_formats), sha256=t.sha256
    )


def stage_metadata(ctx: Ctx, t: ImageTask) -> None:
    assert t.image is not None
    ing = ctx.cfg.ingest
    texts: list[tuple[Path, str]] = []
    for cand in sidecar_candidates(t.path, ing.yaml_suffixes, ing.caption_suffixes):
        if cand.is_file() and not cand.is_symlink():
            texts.append((cand, _read_text(cand)))
    folder_meta = None
    if t.place and t.place.subfolder:
        for name in FOLDER_META_NAMES:
            p = t.path.parent / name
            if p.is_file():
                folder_meta = (p, _read_text(p))
                break
    t.meta = parse_metadata(dict(t.image.text), texts, folder_meta)


def _read_text(p: Path) -> str:
    try:
        return p.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise UnreadableError(p, f"cannot read metadata file: {e.strerror or e}") from e


# Built once (ingest runs it for every image; building a statement costs more than running it).
_REPLACED = (
    update(images)
    .where(images.c.path == bindparam("p_rel"), images.c.sha256 != bindparam("p_sha"), images.c.state == "present")
    .values(state="missing")
)


def stage_register(ctx: Ctx, t: ImageTask) -> None:
    assert t.image is not None and t.meta is not None and t.st is not None and t.sha256
    img, meta, now = t.image, t.meta, time.time()
    rel = ctx.rel(t.path)
    # Not durable: after a power cut the start-up reconcile registers the file again from itself.
    with ctx.store.write(durable=False) as conn:
        values = {
            "path": rel,
            "original_name": to_db_path(t.path.name),
            "size_bytes": t.st.st_size,
            "width": img.width,
            "height": img.height,
            "format": img.format,
            "mtime": t.st.st_mtime,
            "last_seen": now,
            "state": "present",
        }
        # Another image registered at this path has been replaced by this content: its bytes left
        # the tree (filing checks the content too, and takes such an image out of its set).
        conn.execute(_REPLACED, {"p_rel": rel, "p_sha": t.sha256})
        # first_seen survives re-registration: it drives set closing across restarts.
        records.upsert(
            conn, images, {"sha256": t.sha256, "first_seen": now, **values}, ["sha256"], insert_only=("first_seen",)
        )
        records.upsert(
            conn,
            image_metadata,
            {
                "sha256": t.sha256,
                "prompt": meta.prompt,
                "negative_prompt": meta.negative_prompt,
                "seed": meta.seed,
                "batch_id": meta.batch_id,
                "model": meta.model,
                "sources": json.dumps(list(meta.sources)),
                "raw": json.dumps(meta.raw),
            },
            ["sha256"],
        )
        records.upsert_file(conn, rel, t.sha256, t.st.st_size, t.st.st_mtime_ns)
        records.resolve_errors(conn, rel)
        specs = [JobSpec(e.name, e.version) for e in ctx.extractors if e.availability().available]
        enqueue(conn, t.sha256, specs)
    # The first extraction pass (pHash with the others; grouping waits for it) uses these pixels.
    ctx.hand_off(img)
    t.outcome = "registered"
