"""Journaled, atomic, never-overwriting file moves.

Every move is written to the journal (and committed) before the file system is touched, then
marked done. The move itself is link-then-unlink: `link` refuses an existing destination
atomically, and a crash between the two steps leaves two names for one inode, which `recover`
resolves. Pixels and metadata are never rewritten: the inode moves, the bytes stay.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, bindparam, insert, select, update

from core.errors import FileOpError, VanishedError
from core.hashing import sha256_file
from core.layout import fit_name, from_db_path, to_db_path
from daemon.store import Store
from daemon.store.schema import journal

log = logging.getLogger(__name__)


class ContentChangedError(FileOpError):
    """The file at the source is not the content the move was planned for (replaced since)."""

    kind = "content_changed"


@dataclass(frozen=True)
class PlannedMove:
    src: Path
    dst: Path
    sha256: str | None = None
    batch_id: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class MoveResult:
    journal_id: int
    src: Path
    dst: Path


def unique_destination(dst: Path, taken: Collection[Path] = ()) -> Path:
    """`dst`, or `stem (2).ext`, `stem (3).ext`... whichever does not exist yet (nor is `taken`)."""

    def free(p: Path) -> bool:
        return p not in taken and not p.exists() and not p.is_symlink()

    if free(dst):
        return dst
    n = 2
    while True:
        cand = dst.with_name(fit_name(dst.stem, f" ({n}){dst.suffix}"))
        if free(cand):
            return cand
        n += 1


def _check_content(path: Path, sha256: str | None, shown: Path) -> None:
    if sha256 is None:
        return
    try:
        actual = sha256_file(path)
    except OSError as e:
        raise FileOpError(shown, f"cannot read it to check its content: {e.strerror or e}") from e
    if actual != sha256:
        raise ContentChangedError(
            shown, f"content changed (sha256 {actual[:12]}, expected {sha256[:12]}); not moved, left in place"
        )


def _same_content(path: Path, sha256: str) -> bool:
    try:
        return sha256_file(path) == sha256
    except OSError:
        return False


def _atomic_move_no_replace(src: Path, dst: Path, sha256: str | None = None) -> None:
    """Link, check, unlink. With `sha256`, the content is checked through the new link, i.e. the
    very inode that will stay at `dst`: a file replaced at `src` at any moment is never moved
    under the identity of the one it replaced."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError as e:
        raise FileOpError(dst, "destination exists; refusing to overwrite") from e
    except FileNotFoundError as e:
        raise VanishedError(src, "file disappeared before it could be moved") from e
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise FileOpError(src, f"cannot move to {dst}: {e.strerror}") from e
        # No hard links here (exFAT, some network shares): fall back to rename after a check.
        if dst.exists():
            raise FileOpError(dst, "destination exists; refusing to overwrite") from e
        _check_content(src, sha256, src)
        os.rename(src, dst)
        return
    try:
        _check_content(dst, sha256, src)
    except FileOpError:
        os.unlink(dst)  # the second name only; the file stays where it was
        raise
    try:
        os.unlink(src)
    except OSError as e:
        # The source folder refuses deletions (read-only, immutable): take the new name back
        # so the file is exactly where it was, not in two places.
        os.unlink(dst)
        raise FileOpError(src, f"cannot remove it from its folder ({e.strerror}); left in place") from e


class FileOps:
    def __init__(self, store: Store, root: Path) -> None:
        self.store = store
        self.root = root
        self.last_problems: list[str] = []
        self.last_restored: list[tuple[str, str]] = []

    def _rel(self, p: Path) -> str:
        try:
            return to_db_path(str(p.relative_to(self.root)))
        except ValueError:
            return to_db_path(str(p))

    def _abs(self, rel: str) -> Path:
        p = Path(from_db_path(rel))
        return p if p.is_absolute() else self.root / p

    def move(
        self,
        src: Path,
        dst: Path,
        *,
        sha256: str | None = None,
        batch_id: str | None = None,
        note: str | None = None,
        verify: bool = True,
    ) -> MoveResult:
        """Journal, then move. With `sha256` (and `verify`) only that content is moved: a file
        replaced since it was registered raises ContentChangedError and stays where it is."""
        if not src.exists():
            raise VanishedError(src, "file disappeared before it could be moved")
        (jid,) = self.plan([PlannedMove(src, dst, sha256, batch_id, note)])
        return self.perform(jid, src, dst, sha256=sha256 if verify else None, durable=True)

    def plan(self, moves: Sequence[PlannedMove]) -> list[int]:
        """Journal moves (state `planned`) in one durable transaction, before any of them happens;
        returns their journal ids in order. Each must then be `perform`ed, or made and `finish`ed."""
        checked: set[Path] = set()  # a set's moves share one folder: resolved and made once
        for m in moves:
            if m.dst.parent not in checked:
                self._inside_root(m.dst)
                m.dst.parent.mkdir(parents=True, exist_ok=True)
                checked.add(m.dst.parent)
        now = time.time()
        rows = [
            {
                "batch_id": m.batch_id,
                "op": "move",
                "src": self._rel(m.src),
                "dst": self._rel(m.dst),
                "sha256": m.sha256,
                "state": "planned",
                "created_at": now,
                "note": m.note,
            }
            for m in moves
        ]
        with self.store.write() as conn:
            if len(rows) == 1:
                key = conn.execute(insert(journal).values(**rows[0])).inserted_primary_key
                assert key is not None
                return [int(key[0])]
            stmt = insert(journal).returning(journal.c.id, sort_by_parameter_order=True)
            return [int(r.id) for r in conn.execute(stmt, rows)]

    def perform(self, jid: int, src: Path, dst: Path, *, sha256: str | None = None, durable: bool = True) -> MoveResult:
        """Make a planned move (link, check `sha256`, unlink) and mark it done or failed."""
        try:
            self.make(src, dst, sha256)
        except Exception as e:
            with self.store.write(durable=durable) as conn:
                self.finish(conn, {jid: str(e)})
            raise
        with self.store.write(durable=durable) as conn:
            self.finish(conn, {jid: None})
        return MoveResult(jid, src, dst)

    @staticmethod
    def make(src: Path, dst: Path, sha256: str | None = None) -> None:
        """The move itself, for a journal entry `plan`ned before and `finish`ed after."""
        _atomic_move_no_replace(src, dst, sha256)

    @staticmethod
    def finish(conn: Connection, outcomes: Mapping[int, str | None]) -> None:
        """Mark planned moves done (None) or failed (the reason), in the caller's transaction. A
        mark that a power cut loses is found again by `recover` from the files (the entry
        planned, the file at one end), so it may go in a transaction that is not durable."""
        now = time.time()
        planned = journal.c.id == bindparam("jid"), journal.c.state == "planned"
        done = [{"jid": j} for j, why in outcomes.items() if why is None]
        failed = [{"jid": j, "why": why} for j, why in outcomes.items() if why is not None]
        if done:  # one statement for all of them: filing finishes a set's moves at once
            conn.execute(update(journal).where(*planned).values(state="done", finished_at=now), done)
        if failed:
            conn.execute(
                update(journal).where(*planned).values(state="failed", finished_at=now, note=bindparam("why")), failed
            )

    def _inside_root(self, dst: Path) -> None:
        """Refuse a destination whose folder resolves outside the root (an area folder that is a
        symlink to elsewhere): every file stays under the root the user pointed bestshot at."""
        parent = dst.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        root = self.root.resolve()
        real = parent.resolve()
        if real != root and root not in real.parents:
            raise FileOpError(dst, f"destination folder resolves to {real}, outside the root {root}; refusing")

    def recover(self) -> list[str]:
        """Finish or abandon moves a crash interrupted; returns one line per entry touched."""
        out: list[str] = []
        with self.store.read() as conn:
            rows = conn.execute(select(journal).where(journal.c.state == "planned").order_by(journal.c.id)).all()
        for r in rows:
            src, dst = self._abs(r.src), self._abs(r.dst)
            if dst.exists():
                if src.exists() and os.path.samefile(src, dst):
                    os.unlink(src)
                    state, note = "done", "completed after restart (removed the second link)"
                elif src.exists():
                    state, note = "failed", "destination appeared independently; source left in place"
                else:
                    state, note = "done", "had completed before the restart"
            elif src.exists():
                state, note = "failed", "interrupted before the move; will be redone by the pipeline"
            else:
                state, note = "failed", "neither source nor destination exists"
            with self.store.write() as conn:
                conn.execute(
                    update(journal).where(journal.c.id == r.id).values(state=state, note=note, finished_at=time.time())
                )
            out.append(f"journal #{r.id} {r.src} -> {r.dst}: {note}")
            log.info("recovered journal #%s: %s", r.id, note)
        return out

    def undo_batch(self, batch_id: str) -> list[MoveResult]:
        """Move every file of a batch back, newest first; each undo move is journaled too.

        Resumable: a file already back where it was (an undo interrupted by a crash) is only
        marked undone. A move that crash recovery already rolled back is skipped. A file is moved
        back only while it is the content the batch moved (its sha256): the name may have been
        reused since. Anything not restored is reported with the reason, and the rest of the
        batch is still restored. `last_restored` lists the (src, dst) of every batch move now
        undone, including those found already back.
        """
        with self.store.read() as conn:
            rows = conn.execute(
                select(journal)
                .where(journal.c.batch_id == batch_id, journal.c.state == "done")
                .order_by(journal.c.id.desc())
            ).all()
            rolled_back = {
                (r.sha256, r.dst, r.src)
                for r in conn.execute(
                    select(journal).where(journal.c.batch_id == f"rollback:{batch_id}", journal.c.state == "done")
                )
            }
        if not rows:
            raise FileOpError(None, f"no completed moves recorded for batch {batch_id!r}")
        results: list[MoveResult] = []
        problems: list[str] = []
        self.last_restored = []
        for r in rows:
            src, dst = self._abs(r.src), self._abs(r.dst)
            if (r.sha256, r.src, r.dst) in rolled_back:
                self._mark(r.id, "rolled_back", "moved back by crash recovery; nothing to undo")
                continue
            if not dst.exists():
                if src.exists() and (r.sha256 is None or _same_content(src, r.sha256)):
                    self._mark(r.id, "undone", "already back in place")
                    self.last_restored.append((r.src, r.dst))
                else:
                    problems.append(f"{r.dst}: gone (moved or deleted since the batch); not restored")
                continue
            try:
                res = self.move(dst, src, sha256=r.sha256, batch_id=f"undo:{batch_id}", note=f"undo of #{r.id}")
            except ContentChangedError as e:
                problems.append(f"{r.dst}: holds other content now ({e.reason.split(';')[0]}); not restored")
                continue
            except FileOpError as e:
                problems.append(f"{r.dst}: {e.reason}")
                continue
            self._mark(r.id, "undone", None)
            self.last_restored.append((r.src, r.dst))
            results.append(res)
        for p in problems:
            log.warning("undo %s: %s", batch_id, p)
        self.last_problems = problems
        return results

    def _mark(self, jid: int, state: str, note: str | None) -> None:
        with self.store.write() as conn:
            conn.execute(update(journal).where(journal.c.id == jid).values(state=state, note=note))
