"""The persistent per-image job queue.

A job is (sha256, kind, version); the unique key makes enqueueing idempotent, and a bumped
extractor version is simply a new job. Jobs found `running` at start-up were interrupted by a
crash and go back to `pending`; results are upserts, so redoing one duplicates nothing.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, bindparam, exists, func, select, update

from daemon.store.records import upsert
from daemon.store.schema import images, jobs

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class JobSpec:
    kind: str
    version: int


def enqueue(conn: Connection, sha256: str, specs: Iterable[JobSpec]) -> None:
    now = time.time()
    for s in specs:
        upsert(
            conn,
            jobs,
            {
                "sha256": sha256,
                "kind": s.kind,
                "version": s.version,
                "state": "pending",
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            },
            ["sha256", "kind", "version"],
        )


def ensure_jobs(conn: Connection, specs: list[JobSpec]) -> int:
    """Enqueue every missing (present image, spec) job, e.g. after an extractor's version bump."""
    added = 0
    shas = [r.sha256 for r in conn.execute(select(images.c.sha256).where(images.c.state == "present"))]
    for spec in specs:
        have = {
            r.sha256
            for r in conn.execute(select(jobs.c.sha256).where(jobs.c.kind == spec.kind, jobs.c.version == spec.version))
        }
        for sha in shas:
            if sha not in have:
                enqueue(conn, sha, [spec])
                added += 1
    return added


def reset_interrupted(conn: Connection) -> int:
    """Jobs a crash interrupted go back to pending, unless they were running when the process died
    MAX_ATTEMPTS times: such an image takes the process down (a native crash, memory), so it fails
    for good instead of crashing every restart."""
    now = time.time()
    conn.execute(
        update(jobs)
        .where(jobs.c.state == "running", jobs.c.attempts >= MAX_ATTEMPTS)
        .values(state="failed", error=f"the process died {MAX_ATTEMPTS} times while running this job", updated_at=now)
    )
    res = conn.execute(update(jobs).where(jobs.c.state == "running").values(state="pending", updated_at=now))
    return int(res.rowcount or 0)


_THIS_JOB = (
    jobs.c.sha256 == bindparam("p_sha"),
    jobs.c.kind == bindparam("p_kind"),
    jobs.c.version == bindparam("p_version"),
)
# Built once: a pass starts and marks every job of every image it takes.
_START = (
    update(jobs).where(*_THIS_JOB).values(state="running", attempts=jobs.c.attempts + 1, updated_at=bindparam("p_now"))
)
_MARK = (
    update(jobs)
    .where(*_THIS_JOB)
    .values(state=bindparam("p_state"), error=bindparam("p_error"), updated_at=bindparam("p_now"))
)


def start(conn: Connection, sha256: str, specs: Iterable[JobSpec]) -> None:
    """Mark jobs running (and count the attempt) before the work starts; see reset_interrupted."""
    start_many(conn, [(sha256, s) for s in specs])


def start_many(conn: Connection, started: list[tuple[str, JobSpec]]) -> None:
    """`start` of a whole pass's (image, job) pairs, as one executemany."""
    if started:
        now = time.time()
        conn.execute(
            _START, [{"p_sha": sha, "p_kind": s.kind, "p_version": s.version, "p_now": now} for sha, s in started]
        )


def next_images(conn: Connection, limit: int, first: Collection[str] = ()) -> dict[str, list[JobSpec]]:
    """Up to `limit` images with pending work, those in `first` (their pixels are at hand) then
    the oldest, with all their pending jobs."""
    pending = select(jobs.c.sha256, func.min(jobs.c.id).label("first")).where(jobs.c.state == "pending", _present())
    rows = (
        list(conn.execute(pending.where(jobs.c.sha256.in_(list(first))).group_by(jobs.c.sha256).order_by("first")))
        if first
        else []
    )[:limit]
    taken = [r.sha256 for r in rows]
    if len(rows) < limit:
        rows += conn.execute(
            pending.where(jobs.c.sha256.not_in(taken))
            .group_by(jobs.c.sha256)
            .order_by("first")
            .limit(limit - len(rows))
        ).all()
    out: dict[str, list[JobSpec]] = {r.sha256: [] for r in rows}
    if out:
        for r in conn.execute(
            select(jobs.c.sha256, jobs.c.kind, jobs.c.version).where(
                jobs.c.state == "pending", jobs.c.sha256.in_(list(out))
            )
        ):
            out[r.sha256].append(JobSpec(r.kind, r.version))
    return out


def mark(conn: Connection, sha256: str, spec: JobSpec, state: str, error: str | None = None) -> None:
    mark_many(conn, [(sha256, spec, state, error)])


def mark_many(conn: Connection, marks: list[tuple[str, JobSpec, str, str | None]]) -> None:
    """(image, job, state, error) for several jobs, as one executemany."""
    if marks:
        now = time.time()
        conn.execute(
            _MARK,
            [
                {"p_sha": sha, "p_kind": s.kind, "p_version": s.version, "p_state": state, "p_error": err, "p_now": now}
                for sha, s, state, err in marks
            ],
        )


def pending_images(conn: Connection) -> int:
    """Present images with at least one pending job (what the extraction queue still has to do)."""
    return int(
        conn.execute(
            select(func.count(func.distinct(jobs.c.sha256))).where(jobs.c.state == "pending", _present())
        ).scalar_one()
    )


def _present() -> ColumnElement[bool]:
    """The job's image is present: one look-up per pending job (`IN (SELECT ...)` would list
    every present image of the library first)."""
    return exists().where(images.c.sha256 == jobs.c.sha256, images.c.state == "present")


def pending_count(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(jobs).where(jobs.c.state.in_(("pending", "running")))
        ).scalar_one()
    )


def counts_by_state(conn: Connection) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute(select(jobs.c.kind, jobs.c.state, func.count()).group_by(jobs.c.kind, jobs.c.state)):
        out.setdefault(r[0], {})[r[1]] = int(r[2])
    return out
