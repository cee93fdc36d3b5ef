"""Decided sets leave nothing behind where the user works: raw/ shows undecided sets only.

When a set's decision is recorded (`after_decision`):
- bestshot's own outputs in its set folder (proposal.json, crop previews) move to
  labels/sets/set_<id>/, and so does the set's metadata (meta.yaml, the members' YAML and caption
  files) once no image is left in the folder; every move is journaled, nothing is overwritten;
- the set folder is removed once it is empty; Finder's .DS_Store and ._* AppleDouble files do
  not keep it, an image the user left there does;
- bestshot's own Finder tags (bestshot:*) come off the set's files, wherever they are now;
- the review queue's links to the set are pruned.
When the decision is retracted (every member moved back), the outputs move back to the folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from sqlalchemy import select

from core.errors import BestshotError
from core.layout import PREVIEW_SUFFIX, is_finder_leftover, is_image_name
from daemon.context import Ctx
from daemon.files.fileops import unique_destination
from daemon.labels.tags import OWN_TAG_PREFIX, remove_prefixed_tags
from daemon.store import records
from daemon.store.schema import images, set_members, sets

log = logging.getLogger(__name__)

OWN_OUTPUTS = ("proposal.json",)  # and every *PREVIEW_SUFFIX file


def outputs_dir(ctx: Ctx, set_id: str) -> Path:
    """Where a decided set's proposal, previews and metadata are kept."""
    return ctx.cfg.path("labels") / "sets" / f"set_{set_id}"


def _own_output(name: str) -> bool:
    return name in OWN_OUTPUTS or name.endswith(PREVIEW_SUFFIX)


def remove_if_empty(d: Path) -> bool:
    """Remove `d` and its subfolders when nothing but Finder's own leftovers is in them."""
    subs = sorted((p for p in d.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts))
    for sub in subs:
        _rmdir_if_only_leftovers(sub)
    return _rmdir_if_only_leftovers(d)


def _rmdir_if_only_leftovers(d: Path) -> bool:
    try:
        entries = list(os.scandir(d))
    except OSError:
        return False
    if not all(e.is_file(follow_symlinks=False) and is_finder_leftover(e.name) for e in entries):
        return False
    for e in entries:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(e.path)
    try:
        d.rmdir()
    except OSError:
        return False
    return True


def after_decision(ctx: Ctx, set_id: str, retracted: bool) -> None:
    """Tidy a set whose decision was just recorded (or bring its outputs back on a retraction).
    A failure is recorded against the set and never undoes the decision."""
    try:
        if retracted:
            _restore_outputs(ctx, set_id)
        else:
            _tidy(ctx, set_id)
    except (BestshotError, OSError) as e:
        err = e if isinstance(e, BestshotError) else BestshotError(None, f"{type(e).__name__}: {e}")
        with ctx.store.write() as conn:
            records.record_error(conn, f"set_{set_id}", "tidy", err)


def tidy_leftovers(ctx: Ctx, _tracker: object = None) -> int:
    """At start-up: decided sets whose folder is still in raw/ (decided by an earlier version, or
    a crash between the line and the tidy) are tidied now. Returns how many."""
    with ctx.store.read() as conn:
        rows = conn.execute(select(sets.c.id, sets.c.folder).where(sets.c.status == "decided")).all()
    left = [r.id for r in rows if ctx.abs(r.folder).is_dir()]
    for set_id in left:
        after_decision(ctx, set_id, retracted=False)
    if left:
        log.info("tidied %d decided sets left in raw/", len(left))
    return len(left)


def _set_folder(ctx: Ctx, set_id: str) -> Path | None:
    with ctx.store.read() as conn:
        folder = conn.execute(select(sets.c.folder).where(sets.c.id == set_id)).scalar()
    return ctx.abs(folder) if folder else None


def _tidy(ctx: Ctx, set_id: str) -> None:
    folder = _set_folder(ctx, set_id)
    if folder is not None and folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())
        images_left = any(is_image_name(p.name) for p in files)
        for p in files:
            if is_finder_leftover(p.name) or p.name.startswith(".") or is_image_name(p.name):
                continue
            if images_left and not _own_output(p.name):
                continue  # metadata stays with the images the user left in the folder
            dst = unique_destination(outputs_dir(ctx, set_id) / p.name)
            ctx.fileops.move(p, dst, note=f"set {set_id} decided: kept with its labels")
        if remove_if_empty(folder):
            log.info("set %s decided: %s removed, its outputs are in %s", set_id, folder.name, outputs_dir(ctx, set_id))
    _untag(ctx, set_id)
    _prune_review_links(ctx, set_id)


def _untag(ctx: Ctx, set_id: str) -> None:
    with ctx.store.read() as conn:
        paths = [
            r.path
            for r in conn.execute(
                select(images.c.path)
                .join(set_members, set_members.c.sha256 == images.c.sha256)
                .where(set_members.c.set_id == set_id, images.c.state == "present")
            )
        ]
    for rel in paths:
        p = ctx.abs(rel)
        try:
            remove_prefixed_tags(p, OWN_TAG_PREFIX)
        except BestshotError as e:  # moved on meanwhile, or a volume without xattrs: nothing of ours there
            log.info("cannot remove bestshot tags from %s: %s", p, e.reason)


def _prune_review_links(ctx: Ctx, set_id: str) -> None:
    queue = ctx.cfg.path("review_queue") / "next"
    if not queue.is_dir():
        return
    for link in queue.iterdir():
        if link.is_symlink() and link.name.endswith(f"__set_{set_id}"):
            link.unlink()


def _restore_outputs(ctx: Ctx, set_id: str) -> None:
    kept = outputs_dir(ctx, set_id)
    folder = _set_folder(ctx, set_id)
    if folder is None or not kept.is_dir():
        return
    for p in sorted(kept.iterdir()):
        if p.is_file() and not p.is_symlink():
            ctx.fileops.move(p, unique_destination(folder / p.name), note=f"set {set_id} undecided again")
    remove_if_empty(kept)
