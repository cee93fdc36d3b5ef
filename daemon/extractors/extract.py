"""Job stage `extract`: one pass decodes each image once and runs every pending extractor on it.

The first pass over a new image takes the pixels ingest decoded (Ctx.decoded) instead of
reading and decoding the file again.

A pass takes up to `extractors.images_per_pass` images, so model extractors see whole batches
and the decode is shared by all of them.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from core.errors import BestshotError, DecodeError, ExtractorError, VanishedError
from core.extractors.base import Extractor, SidecarResult
from core.extractors.registry import run_pass
from core.imaging import DecodedImage, load
from daemon.context import Ctx
from daemon.extractors.jobs import JobSpec, mark, mark_many, next_images, start_many
from daemon.extractors.sidecar_store import save_results, stored_result
from daemon.store import records
from daemon.store.schema import images

log = logging.getLogger(__name__)


def _stored_dependencies(
    ctx: Ctx, work: dict[str, list[JobSpec]], done: dict[str, set[str]]
) -> dict[str, dict[str, SidecarResult]]:
    """Stored results (current versions) that pending extractors read, so that recomputing the
    anomaly report or the crop after a version bump costs milliseconds instead of rerunning the
    detectors. A dependency not stored whole is left out and run_pass recomputes it."""
    by_name = {e.name: e for e in ctx.extractors}
    out: dict[str, dict[str, SidecarResult]] = {}
    with ctx.store.read() as conn:
        for sha, stored in done.items():
            wanted = {
                d
                for s in work[sha]
                if s.kind in by_name
                for d in (*by_name[s.kind].requires, *by_name[s.kind].optional)
                if d in by_name
            } & stored
            got = {d: stored_result(ctx.cfg, conn, sha, d, by_name[d].version) for d in wanted}
            out[sha] = {d: r for d, r in got.items() if r is not None}
    return out


def run_extract_pass(ctx: Ctx, limit: int | None = None) -> int:
    """Process one batch of pending jobs; returns how many images it handled (0: queue empty)."""
    limit = limit or ctx.cfg.extractors.images_per_pass
    handed = ctx.decoded
    ctx.decoded = {}  # what this pass does not take is decoded again by its own pass
    with ctx.store.read() as conn:
        work = next_images(conn, limit, first=handed)
        paths = {
            r.sha256: r.path
            for r in conn.execute(select(images.c.sha256, images.c.path).where(images.c.sha256.in_(list(work))))
        }
    if not work:
        return 0
    by_name = {e.name: e for e in ctx.extractors}
    decoded: list[DecodedImage] = []
    done_names: dict[str, set[str]] = {}
    starting: list[tuple[str, list[JobSpec], list[JobSpec]]] = []
    for sha, specs in work.items():
        rel = paths.get(sha)
        known = [s for s in specs if s.kind in by_name and by_name[s.kind].version == s.version]
        stale = [s for s in specs if s not in known]
        try:
            if rel is None:
                raise BestshotError(None, "image row missing")
            img = handed.get(sha) or load(
                ctx.abs(rel), max_pixels=ctx.cfg.ingest.max_pixels, accept_formats=tuple(ctx.cfg.ingest.accept_formats)
            )
            if img.sha256 != sha:
                raise DecodeError(ctx.abs(rel), "file content changed since it was registered")
        except VanishedError:
            # Moved or deleted under us: the watcher or the next reconcile finds it again by
            # content; until then the image is not present and its jobs wait.
            with ctx.store.write() as conn:
                conn.execute(update(images).where(images.c.sha256 == sha).values(state="missing"))
            continue
        except BestshotError as e:
            _fail_all(ctx, sha, rel, specs, e)
            continue
        starting.append((sha, stale, known))
        decoded.append(img)
        done_names[sha] = {e.name for e in ctx.extractors} - {s.kind for s in known}
    if not decoded:
        return len(work)
    # One transaction (one fsync) for the pass's start and one for its results, not two per image.
    with ctx.store.write() as conn:
        # Versions no longer current, or extractors disabled.
        mark_many(conn, [(sha, s, "done", "superseded") for sha, stale, _ in starting for s in stale])
        start_many(conn, [(sha, s) for sha, _, known in starting for s in known])
    outcomes = run_pass(ctx.extractors, decoded, done_names, _stored_dependencies(ctx, work, done_names))
    with ctx.store.write() as conn:
        marks: list[tuple[str, JobSpec, str, str | None]] = []
        for img in decoded:
            rel = paths[img.sha256]
            results: list[tuple[Extractor, SidecarResult]] = []
            for spec in work[img.sha256]:
                ext = by_name.get(spec.kind)
                if ext is None or ext.version != spec.version:
                    continue
                out = outcomes.get(img.sha256, {}).get(spec.kind)
                if out is None:
                    # run_pass gives every pending extractor an outcome per image; only an extractor
                    # that breaks its contract (None in the list it returns) gets here.
                    out = ExtractorError(ctx.abs(rel), f"internal error: {spec.kind} produced no outcome")
                if isinstance(out, BestshotError):
                    marks.append((img.sha256, spec, "failed", out.reason))
                    records.record_error(conn, rel, f"extract:{spec.kind}", out, img.sha256)
                else:
                    results.append((ext, out))
                    marks.append((img.sha256, spec, "done", None))
            save_results(ctx, conn, img.sha256, results)
        mark_many(conn, marks)
    return len(work)


def _fail_all(ctx: Ctx, sha: str, rel: str | None, specs: list[JobSpec], e: BestshotError) -> None:
    log.warning("cannot extract %s: %s", rel, e.reason)
    with ctx.store.write() as conn:
        for s in specs:
            mark(conn, sha, s, "failed", e.reason)
        records.record_error(conn, rel, "extract", e, sha)
