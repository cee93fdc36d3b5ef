"""Turns events into work: settles inbox files, runs the stages, tracks files elsewhere.

Only the worker thread calls into the Engine, so the store has one writer.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from core.errors import BestshotError, NotReadyError, UnreadableError
from core.events import DirChanged, Event, FileChanged, FileDeleted, FileMoved, FileSettled, RescanRequested
from core.hashing import sha256_file
from core.layout import AREAS, area_roots, is_ignored_name, is_image_name, locate
from core.metadata import FOLDER_META_NAMES
from daemon.context import Ctx
from daemon.extractors.jobs import JobSpec, ensure_jobs
from daemon.files.health import note_write_failure
from daemon.ingest import filing, stages
from daemon.ingest.prefetch import Prefetched, each_prefetched
from daemon.ingest.register import ImageTask
from daemon.store import records
from daemon.store.schema import errors, files, images
from daemon.watch.settle import Settler

log = logging.getLogger(__name__)

# Called with (sha256, old relative path or None, new relative path or None, when it moved, live)
# when a known image moves; live is False for a move only a reconcile found (made while the daemon
# was down, or an event that was lost), whose time is then the file's ctime.
MoveObserver = Callable[[str, str | None, str | None, float, bool], None]


@dataclass
class _Watch:
    first_seen: float
    size: int
    mtime_ns: int
    attempts: int = 0
    # Unchanged for the stable period and still incomplete (empty, truncated): retried until the
    # timeout, but no longer activity that keeps loose sets open.
    stalled: bool = False


class Engine:
    def __init__(self, ctx: Ctx, settler: Settler | None = None) -> None:
        self.ctx = ctx
        self.settler = settler
        self.watches: dict[Path, _Watch] = {}
        self.move_observers: list[MoveObserver] = []
        # Called with (path, sha256) for a file outside the inbox whose content is no known image.
        self.unknown_observers: list[Callable[[Path, str], None]] = []
        # Called with (sha256, relative path) when a known file changed only in its attributes.
        self.touch_observers: list[Callable[[str, str], None]] = []
        self.stats = {"registered": 0, "errors": 0, "sets_filed": 0}
        # Called after an image registered (its decoded pixels are handed to the first extraction
        # pass); the pipeline runs that pass once a pass's worth is waiting.
        self.on_registered: Callable[[], None] = lambda: None
        # The sets filed since the pipeline last took them (their near-duplicate marks and paths).
        self.filed: list[str] = []
        self.should_stop: Callable[[], bool] = lambda: False
        # Events whose handling a full disk refused, with the time they first arrived.
        self.retry: list[tuple[Event, float]] = []
        self._event_time: float | None = None
        self._live = True

    # ---- events -------------------------------------------------------------------------
    def retry_failed(self) -> None:
        """Handle again, in order and with their first times, the events a write failure stopped."""
        todo, self.retry = self.retry, []
        for i, (ev, when) in enumerate(todo):
            self.handle(ev, when)
            if self.retry:  # still failing: keep the order, try again later
                self.retry.extend(todo[i + 1 :])
                return

    def handle(self, ev: Event, when: float | None = None) -> None:
        self._event_time = time.time() if when is None else when
        try:
            if isinstance(ev, FileSettled):
                self._settled(ev.path)
            elif isinstance(ev, FileChanged):
                self._changed(ev.path)
            elif isinstance(ev, FileMoved):
                self._moved(ev.src, ev.dst)
            elif isinstance(ev, FileDeleted):
                self._deleted(ev.path)
            elif isinstance(ev, DirChanged):
                self._dir(ev.path)
            elif isinstance(ev, RescanRequested):
                self.reconcile(direct=False)
        except Exception as e:  # one bad event must not stop the daemon
            if note_write_failure(self.ctx.health, f"handling {type(ev).__name__}", e):
                self.retry.append((ev, self._event_time))
            else:
                log.exception("failed handling %s", ev)
        finally:
            self._event_time = None

    def _through_symlink(self, p: Path) -> bool:
        """A path that reaches its file through a symlinked folder (e.g. a link loop) is an alias."""
        try:
            parts = p.relative_to(self.ctx.root).parts[:-1]
        except ValueError:
            return False
        cur = self.ctx.root
        for part in parts:
            cur = cur / part
            if cur.is_symlink():
                return True
        return False

    def _in_inbox(self, p: Path) -> bool:
        return locate(self.ctx.cfg, p).area == "inbox"

    def _changed(self, p: Path) -> None:
        if is_ignored_name(p.name) or self._through_symlink(p):
            return
        place = locate(self.ctx.cfg, p)
        if place.area is None:
            return
        if place.area == "inbox" and p.is_symlink() and p.is_dir():
            self._symlinked_folder(p)
            return
        if place.area == "inbox":
            if is_image_name(p.name):
                self._arm(p)
            elif p.name in FOLDER_META_NAMES or p.suffix.lower() in (
                *self.ctx.cfg.ingest.yaml_suffixes,
                *self.ctx.cfg.ingest.caption_suffixes,
            ):
                self._metadata_changed(p)
        elif is_image_name(p.name):
            self.track(p)

    def _metadata_changed(self, meta: Path) -> None:
        """A fixed YAML or caption re-tries the images it belongs to that have not been filed yet."""
        folder = meta.parent
        for sib in folder.iterdir() if folder.is_dir() else []:
            if is_image_name(sib.name) and (meta.name in FOLDER_META_NAMES or meta.name.startswith(sib.stem)):
                with self.ctx.store.write() as conn:
                    records.forget_file(conn, self.ctx.rel(sib))
                self._arm(sib)

    def _arm(self, p: Path, delay: float | None = None) -> None:
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            self.watches.pop(p, None)
            return
        now = time.time()
        w = self.watches.get(p)
        if w is None:
            w = self.watches[p] = _Watch(now, st.st_size, st.st_mtime_ns)
        else:
            if (w.size, w.mtime_ns) != (st.st_size, st.st_mtime_ns):
                w.stalled = False
            w.size, w.mtime_ns = st.st_size, st.st_mtime_ns
        wait = self.ctx.cfg.watch.stable_seconds if delay is None else delay
        if self.settler is not None:
            self.settler.schedule(p, wait)
        else:
            self._settled(p)

    def _settle_all(self, paths: list[Path]) -> None:
        """Settle files one after another, in order; `scan` reads, hashes and decodes the next
        few ahead on `ingest.read_ahead_threads` threads (daemon/ingest/prefetch.py)."""
        workers = self.ctx.cfg.ingest.read_ahead_threads
        if workers == 0 or len(paths) < 2:
            for p in paths:
                self._settled(p)
            return
        for p, ahead in each_prefetched(paths, self.ctx.cfg.ingest, workers, self.should_stop):
            self._settled(p, ahead)

    def _settled(self, p: Path, ahead: Prefetched | None = None) -> None:
        w = self.watches.get(p)
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            self.watches.pop(p, None)
            return
        if w is not None and self.settler is not None and (st.st_size, st.st_mtime_ns) != (w.size, w.mtime_ns):
            self._arm(p)  # still being written
            return
        if (
            stat.S_ISREG(st.st_mode)
            and time.time() - st.st_mtime < self.ctx.cfg.watch.stable_seconds
            and self.settler is None
        ):
            time.sleep(max(0.0, self.ctx.cfg.watch.stable_seconds - (time.time() - st.st_mtime)))
        try:
            task = stages.run_image(self.ctx, ImageTask(p, prefetched=ahead))
        except NotReadyError as e:
            w = w or _Watch(time.time(), st.st_size, st.st_mtime_ns)
            self.watches[p] = w
            waited = time.time() - w.first_seen
            if self.settler is None or waited >= self.ctx.cfg.watch.incomplete_timeout_seconds:
                stages.record_not_ready(self.ctx, self.ctx.rel(p), e, waited)
                self.watches.pop(p, None)
                self.stats["errors"] += 1
            else:
                w.attempts += 1
                w.stalled = True
                self._arm(p, delay=min(5.0, self.ctx.cfg.watch.stable_seconds * 2 ** min(w.attempts, 4)))
            return
        self.watches.pop(p, None)
        if task.outcome == "registered":
            self.stats["registered"] += 1
            self.on_registered()
        elif task.outcome.startswith("error"):
            self.stats["errors"] += 1

    def _moved(self, src: Path, dst: Path) -> None:
        if self.settler is not None:
            self.settler.cancel(src)
        self.watches.pop(src, None)
        rel_src = self.ctx.rel(src)
        with self.ctx.store.write() as conn:
            records.resolve_errors(conn, rel_src)  # what failed there is no longer there
            row = conn.execute(select(files).where(files.c.path == rel_src)).first()
        if row is None or locate(self.ctx.cfg, dst).area is None or self._in_inbox(dst):
            if row is not None:
                self._deleted(src)
            self._changed(dst)
            return
        try:
            st = os.lstat(dst)
        except FileNotFoundError:
            self._deleted(src)
            return
        with self.ctx.store.write() as conn:
            records.forget_file(conn, rel_src)
            records.upsert_file(conn, self.ctx.rel(dst), row.sha256, st.st_size, st.st_mtime_ns)
            img = records.image_row(conn, row.sha256)
            if img is not None and img.path == rel_src:
                records.set_image_path(conn, row.sha256, self.ctx.rel(dst))
        self._notify(row.sha256, rel_src, self.ctx.rel(dst))

    def _deleted(self, p: Path) -> None:
        if self.settler is not None:
            self.settler.cancel(p)
        self.watches.pop(p, None)
        rel = self.ctx.rel(p)
        inside: list[str] = []
        left: tuple[str | None] | None = None  # (where the image is now,) when this was its path
        with self.ctx.store.write() as conn:
            records.resolve_errors(conn, rel)  # errors about a file that is gone are moot
            sha = records.forget_file(conn, rel)
            if sha is None:
                inside = records.paths_under(conn, rel)
            elif (img := records.image_row(conn, sha)) is not None and img.path == rel:
                other = conn.execute(select(files.c.path).where(files.c.sha256 == sha)).first()
                if other is not None:
                    records.set_image_path(conn, sha, other.path)
                    left = (other.path,)
                else:
                    # Possibly moved out of the tree (Trash): reconcile or a later event may find it again.
                    conn.execute(update(images).where(images.c.sha256 == sha).values(state="missing"))
                    left = (None,)
        if sha is None:
            self._folder_gone(p, inside)
        elif left is not None:
            self._notify(sha, rel, left[0])

    def _folder_gone(self, d: Path, inside: list[str]) -> None:
        """A folder trashed or moved out of the root arrives as one event for the folder alone
        (FSEvents and inotify alike): every known file that was under it left with it, now."""
        if not inside or d.exists():
            return
        # A whole area folder gone (renamed, unmounted) is not the user deleting every file in it.
        if any(d == base or d in base.parents for base in area_roots(self.ctx.cfg).values()):
            log.warning("%s is gone; its files are kept as known until it comes back", d)
            return
        for rel in inside:
            p = self.ctx.abs(rel)
            if not p.exists():
                self._deleted(p)

    def _symlinked_folder(self, d: Path) -> None:
        """Never followed (a link may lead anywhere, or loop), but never skipped in silence."""
        with self.ctx.store.write() as conn:
            records.record_error(
                conn,
                self.ctx.rel(d),
                "stat",
                UnreadableError(d, "symbolic link to a folder: not followed; move the folder itself into the inbox"),
            )

    def _dir(self, d: Path) -> None:
        # FSEvents may report only the folder for a whole folder drop or move: look inside.
        if locate(self.ctx.cfg, d).area is None or self._through_symlink(d):
            return
        if d.is_symlink():
            if self._in_inbox(d):
                self._symlinked_folder(d)
            return
        for dp, dn, fn in os.walk(d, followlinks=False):
            dn[:] = [x for x in dn if not x.startswith(".")]
            for n in fn:
                self._changed(Path(dp) / n)

    def _notify(self, sha: str, old: str | None, new: str | None, when: float | None = None) -> None:
        if when is None:
            when = self._event_time if self._event_time is not None else time.time()
        for obs in self.move_observers:
            try:
                obs(sha, old, new, when, self._live)
            except Exception as e:
                self._observer_failed("decisions", new or old, sha, e)

    # ---- files outside the inbox ----------------------------------------------------------
    def track(self, p: Path) -> None:
        """Know which image a file in raw/ or exports/ is (by content), and follow moves."""
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode):
            return
        rel = self.ctx.rel(p)
        with self.ctx.store.read() as conn:
            sha = records.known_file(conn, rel, st.st_size, st.st_mtime_ns)
        if sha is not None:
            # Same bytes, same place: only its attributes changed (e.g. a Finder tag was added).
            for touch in self.touch_observers:
                touch(sha, rel)
            return
        try:
            sha = sha256_file(p)
        except OSError as e:
            with self.ctx.store.write() as conn:
                records.record_error(conn, rel, "track", BestshotError(p, f"cannot read: {e.strerror or e}"))
            return
        with self.ctx.store.write() as conn:
            records.upsert_file(conn, rel, sha, st.st_size, st.st_mtime_ns)
            img = records.image_row(conn, sha)
            old = img.path if img is not None else None
            moved = (
                img is not None
                and (img.path != rel)
                and (img.state != "present" or not self.ctx.abs(img.path).exists())
            )
            if moved:
                records.set_image_path(conn, sha, rel)
        if moved:
            # A move sets the ctime: found by a reconcile, the move is dated by it, not by when the
            # walk got there (else the walk's order becomes the order of the user's actions).
            now = self._event_time if self._event_time is not None else time.time()
            self._notify(sha, old, rel, min(now, st.st_ctime))
        if img is None:
            for obs in self.unknown_observers:
                try:
                    obs(p, sha)
                except Exception as e:
                    self._observer_failed("crop_match", rel, sha, e)

    def _observer_failed(self, stage: str, rel: str | None, sha: str, e: Exception) -> None:
        """An observer (the decision tracker) failing on one file must not stop the others, nor
        the event; what went wrong is recorded where `bestshot status` shows it, not only logged."""
        if note_write_failure(self.ctx.health, f"{stage} for {rel}", e):
            return  # the disk refused a write: the health file says so, and recording would fail too
        log.exception("%s failed for %s", stage, rel or sha[:12])
        err = e if isinstance(e, BestshotError) else BestshotError(None, f"internal error: {type(e).__name__}: {e}")
        try:
            with self.ctx.store.write() as conn:
                records.record_error(conn, rel, stage, err, sha)
        except Exception:
            log.exception("cannot record the failure of %s for %s", stage, rel)

    # ---- sets ---------------------------------------------------------------------------
    def file_ready_sets(self, force_close: bool = False) -> float | None:
        """File every closed set; returns when the next open loose set closes (for the worker's wait)."""
        for t in filing.unfinished_sets(self.ctx):
            if stages.run_set(self.ctx, t):
                self.filed.append(t.set_id)
        busy = set(self.watches) | (self.settler.pending() if self.settler else set())
        for t in filing.folder_sets(self.ctx, busy):
            if stages.run_set(self.ctx, t):
                self.stats["sets_filed"] += 1
                self.filed.append(t.set_id)
        # Files still settling in the inbox are activity: no loose set closes as "quiet" meanwhile.
        inbox = self.ctx.cfg.path("inbox")
        settling = any(p.parent == inbox and not self._stalled(p) for p in busy)
        now = 0.0 if settling and not force_close else time.time()
        ready, next_close = filing.grouped_sets(self.ctx, now, force_close=force_close)
        for t in ready:
            if stages.run_set(self.ctx, t):
                self.stats["sets_filed"] += 1
                self.filed.append(t.set_id)
        return next_close

    def _stalled(self, p: Path) -> bool:
        w = self.watches.get(p)
        return w is not None and w.stalled

    # ---- reconcile ------------------------------------------------------------------------
    def reconcile(self, direct: bool) -> None:
        """Full scan: catches events FSEvents coalesced or dropped and moves out of the tree."""
        self._live = False
        try:
            self._reconcile(direct)
        finally:
            self._live = True

    def _reconcile(self, direct: bool) -> None:
        cfg = self.ctx.cfg
        seen: set[str] = set()
        for area in AREAS:
            base = cfg.path(area)
            if not base.is_dir():
                continue
            for dp, dn, fn in os.walk(base, followlinks=False):
                if self.should_stop():
                    return  # a shutdown was requested; the next start reconciles again
                dn[:] = sorted(x for x in dn if not x.startswith("."))
                if area == "inbox":
                    for x in dn:
                        if (Path(dp) / x).is_symlink():
                            self._symlinked_folder(Path(dp) / x)
                settle_now: list[Path] = []
                for n in sorted(fn):
                    p = Path(dp) / n
                    if not is_image_name(n):
                        continue
                    seen.add(self.ctx.rel(p))
                    if area == "inbox":
                        if direct:
                            settle_now.append(p)
                        elif p not in self.watches:
                            self._arm(p)
                    else:
                        self.track(p)
                self._settle_all(settle_now)
        with self.ctx.store.read() as conn:
            known_paths = [r.path for r in conn.execute(select(files.c.path))]
        missing_areas = [cfg.path(a) for a in AREAS if not cfg.path(a).is_dir()]
        for rel in known_paths:
            p = self.ctx.abs(rel)
            if rel in seen or p.exists():
                continue
            # A whole area folder gone (renamed, unmounted) is not the user deleting every file in it.
            if any(base in p.parents for base in missing_areas):
                continue
            self._deleted(p)
        self._resolve_stale_errors()
        with self.ctx.store.write() as conn:
            ensure_jobs(conn, [JobSpec(e.name, e.version) for e in self.ctx.extractors if e.availability().available])

    def _resolve_stale_errors(self) -> None:
        """Errors about files (or links) in the watched areas that are no longer there: the user
        deleted or renamed them, and events for that may have been lost."""
        with self.ctx.store.read() as conn:
            paths = [r[0] for r in conn.execute(select(errors.c.path).where(errors.c.resolved.is_(False)).distinct())]
        gone = [
            rel
            for rel in paths
            if rel
            and locate(self.ctx.cfg, self.ctx.abs(rel)).area is not None
            and not os.path.lexists(self.ctx.abs(rel))
        ]
        if gone:
            with self.ctx.store.write() as conn:
                for rel in gone:
                    records.resolve_errors(conn, rel)
