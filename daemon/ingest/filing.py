"""Set stages: group registered inbox images into sets and file them under raw/set_<id>/.

The set and its members are committed (status `filing`) before any file moves, so a crash
mid-filing resumes the same set on restart instead of regrouping what is left.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, and_, delete, exists, insert, or_, select, update

from core.errors import NotReadyError, VanishedError
from core.grouping import LooseImage, group_loose, set_id_for
from core.layout import is_image_name, locate
from core.metadata import FOLDER_META_NAMES, ImageMeta, sidecar_candidates
from daemon.context import Ctx
from daemon.files.fileops import ContentChangedError, PlannedMove, unique_destination
from daemon.labels.tidy import remove_if_empty
from daemon.store import records
from daemon.store.schema import errors, files, image_metadata, images, jobs, journal, set_members, sets, sidecars

log = logging.getLogger(__name__)


@dataclass
class SetTask:
    set_id: str
    members: list[str]  # sha256, in position order
    source: str  # folder | grouped
    reason: str
    folder: Path | None = None  # the dropped inbox folder, for folder sets


def _loose_images(ctx: Ctx) -> tuple[list[LooseImage], bool]:
    """Loose inbox images, and whether any of them still waits for its grouping column (pHash,
    computed by its first extraction pass; a failed one groups without)."""
    inbox = ctx.cfg.path("inbox")
    inbox_rel = ctx.rel(inbox)
    indexed_by = [e.name for e in ctx.extractors if any(o.kind == "column" for o in e.outputs)]
    computing = select(jobs.c.sha256).where(jobs.c.kind.in_(indexed_by), jobs.c.state.in_(("pending", "running")))
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(
                images,
                image_metadata.c.prompt,
                image_metadata.c.batch_id,
                image_metadata.c.seed,
                images.c.sha256.in_(computing).label("computing"),
            )
            .join(image_metadata, image_metadata.c.sha256 == images.c.sha256, isouter=True)
            .where(
                # `|| ''` keeps SQLite off ix_images_state_mtime (every present image) and on the
                # path ranges below.
                images.c.state.concat("") == "present",
                ~exists().where(set_members.c.sha256 == images.c.sha256),
                # Ranges on ix_images_path ("/" sorts just before "0", ":" just before ";"): the
                # round reads the inbox's rows, not the library's.
                or_(
                    and_(images.c.path > inbox_rel + "/", images.c.path < inbox_rel + "0"),
                    and_(images.c.path > "%b:", images.c.path < "%b;"),
                ),
            )
        ).all()
        emb_rows = (
            conn.execute(
                select(sidecars.c.sha256, sidecars.c.blob).where(
                    sidecars.c.extractor == "clip",
                    sidecars.c.blob.is_not(None),
                    sidecars.c.sha256.in_([r.sha256 for r in rows]),
                )
            ).all()
            if rows
            else []
        )
    embeddings = {r.sha256: np.frombuffer(r.blob, dtype="<f4") for r in emb_rows}
    out = []
    waiting = False
    for r in rows:
        if ctx.abs(r.path).parent != inbox:
            continue
        waiting = waiting or bool(r.computing)
        meta = ImageMeta(prompt=r.prompt, batch_id=r.batch_id, seed=r.seed)
        out.append(
            LooseImage(
                sha256=r.sha256,
                name=ctx.abs(r.path).name,
                mtime=r.mtime,
                arrived=r.first_seen,
                meta_key=meta.group_key(),
                seed=r.seed,
                phash=int(r.phash, 16) if r.phash else None,
                embedding=embeddings.get(r.sha256),
            )
        )
    return out, waiting


def grouped_sets(ctx: Ctx, now: float, force_close: bool = False) -> tuple[list[SetTask], float | None]:
    """Closed loose-file sets ready to file, and when the next open set would close by quiet time."""
    loose, waiting = _loose_images(ctx)
    # A set must not close without a member whose pHash is on its way; closing by force (scan,
    # after its passes) groups what there is.
    if not loose or (waiting and not force_close):
        return [], None
    proposals = group_loose(loose, ctx.cfg.grouping, now=float("inf") if force_close else now)
    ready, next_close = [], None
    for p in proposals:
        if p.closed:
            shas = [m.sha256 for m in p.members]
            ready.append(SetTask(set_id_for(shas), shas, "grouped", p.reason))
        else:
            due = max(m.arrived for m in p.members) + ctx.cfg.grouping.quiet_seconds
            next_close = due if next_close is None else min(next_close, due)
    return ready, next_close


def folder_sets(ctx: Ctx, busy: Collection[Path]) -> list[SetTask]:
    """Dropped folders whose every image has settled: registered, or failed with a recorded error."""
    inbox = ctx.cfg.path("inbox")
    out: list[SetTask] = []
    try:
        subdirs = [d for d in inbox.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")]
    except OSError:
        return out
    with ctx.store.read() as conn:
        for d in sorted(subdirs):
            image_files = [Path(dp) / n for dp, _dn, fn in os.walk(d) for n in sorted(fn) if is_image_name(n)]
            if not image_files or any(p in busy or p.parent in busy for p in image_files):
                continue
            members: list[str] = []
            settled = True
            for p in image_files:
                rel = ctx.rel(p)
                frow = conn.execute(select(files.c.sha256).where(files.c.path == rel)).first()
                img = records.image_row(conn, frow.sha256) if frow else None
                if img is not None and img.path == rel:
                    in_set = conn.execute(
                        select(set_members.c.set_id).where(set_members.c.sha256 == img.sha256)
                    ).first()
                    if not in_set:
                        members.append(img.sha256)
                    continue
                failed = conn.execute(
                    select(errors.c.id).where(errors.c.path == rel, errors.c.resolved.is_(False))
                ).first()
                if not failed:
                    settled = False
                    break
            if settled and members:
                sid = folder_set_id(conn, d.name, members)
                out.append(
                    SetTask(sid, members, "folder", f"dropped folder '{d.name}' ({len(members)} images)", folder=d)
                )
    return out


def folder_set_id(conn: Connection, folder_name: str, members: list[str]) -> str:
    """The user's folder name, as the set's id and so its raw/set_<id>/ folder: `my batch` files as
    raw/set_my_batch/ (`set_x` as raw/set_x/). A name already taken by another set gets a short
    content suffix; a name with nothing usable left falls back to the content id."""
    name = folder_name[4:] if folder_name.startswith("set_") and len(folder_name) > 4 else folder_name
    safe = re.sub(r"_+", "_", "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in name))
    safe = safe.strip("_-")[:48]
    content_id = set_id_for(members)
    if not safe:
        return content_id
    if not conn.execute(select(sets.c.id).where(sets.c.id == safe)).first():
        return safe
    return f"{safe}-{content_id[:6]}"


def persist_set(ctx: Ctx, task: SetTask) -> None:
    """Stage `persist`: commit the set and its membership before anything moves."""
    folder = ctx.cfg.path("raw") / f"set_{task.set_id}"
    # Not durable by itself: the journal's durable commit of the set's moves, before the first of
    # them, puts it on disk too (the WAL is written in order).
    with ctx.store.write(durable=False) as conn:
        if conn.execute(select(sets.c.id).where(sets.c.id == task.set_id)).first():
            return
        conn.execute(
            insert(sets).values(
                id=task.set_id,
                created_at=time.time(),
                source=task.source,
                reason=task.reason,
                size=len(task.members),
                folder=ctx.rel(folder),
                status="filing",
                source_folder=ctx.rel(task.folder) if task.folder is not None else None,
            )
        )
        conn.execute(
            insert(set_members),
            [{"set_id": task.set_id, "sha256": sha, "position": pos} for pos, sha in enumerate(task.members)],
        )


def move_members(ctx: Ctx, task: SetTask) -> None:
    """Stage `file`: journaled moves of each member and its metadata files into the set folder."""
    with ctx.store.read() as conn:
        srow = conn.execute(select(sets).where(sets.c.id == task.set_id)).one()
        rows = conn.execute(
            select(images.c.sha256, images.c.path)
            .join(set_members, set_members.c.sha256 == images.c.sha256)
            .where(set_members.c.set_id == task.set_id)
            .order_by(set_members.c.position)
        ).all()
    folder = ctx.abs(srow.folder)
    folder.mkdir(parents=True, exist_ok=True)
    planned: list[_MemberMove] = []
    taken: set[Path] = set()  # destinations planned for this set, not on disk yet
    for r in rows:
        src = ctx.abs(r.path)
        if src.parent == folder:
            # Filed before a crash; its metadata files may not have followed yet.
            origin = _filed_from(ctx, r.sha256, src)
            if origin is not None:
                _move_companions(ctx, origin, src)
            continue
        if not src.exists():
            # A crash between the move and the path update: the journal knows where it went.
            with ctx.store.read() as conn:
                last = conn.execute(
                    select(journal.c.dst)
                    .where(journal.c.sha256 == r.sha256, journal.c.state == "done")
                    .order_by(journal.c.id.desc())
                    .limit(1)
                ).scalar()
            moved_to = ctx.abs(last) if last else None
            if moved_to is not None and moved_to.exists():
                st = moved_to.stat()
                with ctx.store.write() as conn:
                    records.relocate(conn, r.path, ctx.rel(moved_to), r.sha256, st.st_size, st.st_mtime_ns)
                _move_companions(ctx, src, moved_to)
                continue
            log.warning("set %s: member %s vanished before filing", task.set_id, r.path)
            continue
        if locate(ctx.cfg, src).area != "inbox":
            # Already taken elsewhere (the user moved it while this set was being filed, and a
            # retry finds it in exports/): their move stands; filing never pulls a file back.
            log.info("set %s: member %s was moved by the user before filing finished; left there", task.set_id, r.path)
            continue
        dst = unique_destination(folder / src.name, taken)
        taken.add(dst)
        # Stat before the move (a move keeps size and mtime): the user may take the file out of
        # the set folder the moment it appears there, before we could stat it at `dst`; the
        # watcher then reports that move from `dst`, where the path index already has it.
        st = src.stat()
        companions = []
        for c, name in _companions(ctx, src, dst):
            cdst = unique_destination(folder / name, taken)
            taken.add(cdst)
            companions.append((c, cdst))
        planned.append(_MemberMove(r.sha256, src, dst, st, companions))
    _file_planned(ctx, task.set_id, planned)
    if task.folder is not None:
        for name in FOLDER_META_NAMES:
            m = task.folder / name
            if m.is_file() and not (folder / name).exists():
                ctx.fileops.move(m, folder / name, note=f"set metadata of {task.set_id}")
        remove_if_empty(task.folder)
    # Not durable: a set left `filing` by a power cut is filed again, finding its files in place.
    with ctx.store.write(durable=False) as conn:
        if not conn.execute(select(set_members.c.sha256).where(set_members.c.set_id == task.set_id)).first():
            # Every member was replaced before it could be filed: there is no set left to file.
            conn.execute(delete(sets).where(sets.c.id == task.set_id))
            remove_if_empty(folder)
            log.info("set %s dissolved: its images were replaced before filing", task.set_id)
            return
        conn.execute(update(sets).where(sets.c.id == task.set_id).values(status="filed"))
    log.info("%s", filed_line(ctx, task, [Path(r.path).name for r in rows]))


def filed_line(ctx: Ctx, task: SetTask, names: list[str]) -> str:
    """The one line `run` logs for a filed set, naming what the user dropped."""
    where = ctx.rel(ctx.cfg.path("raw") / f"set_{task.set_id}") + "/"
    if task.folder is not None:
        return f"filed your folder '{task.folder.name}' as {where} ({len(names)} images)"
    if len(names) == 1:
        return f"filed single image {names[0]} as {where} (nothing similar arrived: {task.reason})"
    return f"filed {len(names)} loose images as {where} ({', '.join(names)}; {task.reason})"


def _content_replaced(ctx: Ctx, set_id: str, sha: str, src: Path, err: ContentChangedError) -> None:
    """The file at `src` is no longer the content registered for it (replaced after registration):
    that content left the tree, so it leaves the set, and what is there now is registered anew."""
    from daemon.ingest import stages  # filing is one of the set stages: imported when needed, no cycle
    from daemon.ingest.register import ImageTask

    rel = ctx.rel(src)
    log.warning("set %s: %s was replaced after registration (%s); registering the new content", set_id, rel, err)
    with ctx.store.write() as conn:
        conn.execute(delete(set_members).where(set_members.c.set_id == set_id, set_members.c.sha256 == sha))
        left = conn.execute(select(set_members.c.sha256).where(set_members.c.set_id == set_id)).all()
        conn.execute(update(sets).where(sets.c.id == set_id).values(size=len(left)))
        conn.execute(update(images).where(images.c.sha256 == sha).values(state="missing"))
        if conn.execute(select(files.c.sha256).where(files.c.path == rel)).scalar() == sha:
            records.forget_file(conn, rel)
    try:
        stages.run_image(ctx, ImageTask(src))
    except NotReadyError:
        log.info("%s is still being written; its next event registers it", rel)


def _companions(ctx: Ctx, origin: Path, dst: Path) -> list[tuple[Path, str]]:
    """The image's YAML/caption files where it was, each with its name beside `dst` (paired)."""
    ing = ctx.cfg.ingest
    out = []
    for c in sidecar_candidates(origin, ing.yaml_suffixes, ing.caption_suffixes):
        if not c.is_file() or c.is_symlink():
            continue
        name = (
            dst.name + c.name[len(origin.name) :]
            if c.name.startswith(origin.name)
            else dst.stem + c.name[len(origin.stem) :]
        )
        out.append((c, name))
    return out


def _move_companions(ctx: Ctx, origin: Path, dst: Path) -> None:
    """Move the image's YAML/caption files from where it was to beside it, names kept paired."""
    for c, name in _companions(ctx, origin, dst):
        try:
            ctx.fileops.move(c, unique_destination(dst.parent / name), note=f"metadata of {dst.name}")
        except (VanishedError, FileNotFoundError):
            log.info("metadata file %s was moved away before it could follow its image", c)


@dataclass
class _MemberMove:
    sha256: str
    src: Path
    dst: Path
    st: os.stat_result
    companions: list[tuple[Path, Path]]


def _file_planned(ctx: Ctx, set_id: str, members: list[_MemberMove]) -> None:
    """Move the members and their metadata files. One durable transaction journals every move of
    the set before the first one happens; the marks and path updates follow in one transaction
    that is not durable (after a power cut, recovery and the next reconcile find the same from the
    journal and the files): filing a set costs one fsync, not two per file."""
    if not members:
        return
    moves: list[PlannedMove] = []
    for m in members:
        moves.append(PlannedMove(m.src, m.dst, m.sha256, note=f"file into set {set_id}"))
        moves.extend(PlannedMove(c, d, note=f"metadata of {m.dst.name}") for c, d in m.companions)
    ids = iter(ctx.fileops.plan(moves))
    planned = [(m, next(ids), [next(ids) for _ in m.companions]) for m in members]
    outcomes: dict[int, str | None] = {}
    moved: list[_MemberMove] = []
    replaced: list[tuple[_MemberMove, ContentChangedError]] = []
    try:
        for m, jid, cids in planned:
            try:
                ctx.fileops.make(m.src, m.dst, m.sha256)
            except ContentChangedError as changed:
                outcomes[jid] = str(changed)
                outcomes.update(dict.fromkeys(cids, "not moved: its image was not"))
                replaced.append((m, changed))
                continue
            except Exception as e:
                outcomes[jid] = str(e)
                raise
            outcomes[jid] = None
            moved.append(m)
            for cid, (c, d) in zip(cids, m.companions, strict=True):
                try:
                    ctx.fileops.make(c, d)
                    outcomes[cid] = None
                except VanishedError as e:
                    log.info("metadata file %s was moved away before it could follow its image", c)
                    outcomes[cid] = str(e)
    finally:
        # What an error stopped (recorded against the set, retried at the next reconcile) stays planned
        # no longer: failed, its files where they were.
        stopped = "not attempted: filing the set stopped at an earlier error"
        outcomes.update({j: stopped for _m, jid, cids in planned for j in (jid, *cids) if j not in outcomes})
        with ctx.store.write(durable=False) as conn:
            ctx.fileops.finish(conn, outcomes)
            records.relocate_many(
                conn,
                [
                    records.Relocation(ctx.rel(m.src), ctx.rel(m.dst), m.sha256, m.st.st_size, m.st.st_mtime_ns)
                    for m in moved
                ],
            )
    for m, err in replaced:
        _content_replaced(ctx, set_id, m.sha256, m.src, err)


def _filed_from(ctx: Ctx, sha: str, now_at: Path) -> Path | None:
    """Where the journal says this image was moved from into its set folder."""
    with ctx.store.read() as conn:
        src = conn.execute(
            select(journal.c.src)
            .where(
                journal.c.sha256 == sha,
                journal.c.dst == ctx.rel(now_at),
                journal.c.state == "done",
            )
            .order_by(journal.c.id.desc())
            .limit(1)
        ).scalar()
    return ctx.abs(src) if src else None


def unfinished_sets(ctx: Ctx) -> list[SetTask]:
    with ctx.store.read() as conn:
        rows = conn.execute(select(sets).where(sets.c.status == "filing")).all()
        out = []
        for r in rows:
            members = [
                m.sha256
                for m in conn.execute(
                    select(set_members.c.sha256).where(set_members.c.set_id == r.id).order_by(set_members.c.position)
                )
            ]
            out.append(
                SetTask(r.id, members, r.source, r.reason, folder=ctx.abs(r.source_folder) if r.source_folder else None)
            )
    return out
