"""The named stages of one image and of one set, in order (daemon/pipeline.py puts them, and
everything after them, together).

An ImageTask flows through IMAGE_STAGES when a file in the inbox settles; a SetTask flows
through SET_STAGES when a set closes. Per-item failures are caught here, at the stage
boundary, and recorded against the path so `bestshot status` shows them; the daemon goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.errors import BestshotError, DuplicateError, NotReadyError
from daemon.context import Ctx
from daemon.ingest import filing, register
from daemon.store import records

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Stage(Generic[T]):
    name: str
    run: Callable[[Ctx, T], None]


IMAGE_STAGES: tuple[Stage[register.ImageTask], ...] = (
    Stage("stat", register.stage_stat),  # symlinks, non-files, size limits
    Stage("read", register.stage_read),  # bytes + sha256; known content short-circuits
    Stage("decode", register.stage_decode),  # complete decode, pixel limit
    Stage("metadata", register.stage_metadata),  # YAML / caption / meta.yaml / PNG chunks
    Stage("register", register.stage_register),  # image row, jobs enqueued, pixels handed to the first pass
)

SET_STAGES: tuple[Stage[filing.SetTask], ...] = (
    Stage("persist", filing.persist_set),  # set + members committed before any move
    Stage("file", filing.move_members),  # journaled moves into raw/set_<id>/
)


def run_image(ctx: Ctx, task: register.ImageTask) -> register.ImageTask:
    """Run the image stages. NotReadyError propagates (the caller retries later); others are recorded."""
    rel = ctx.rel(task.path)
    for stage in IMAGE_STAGES:
        try:
            stage.run(ctx, task)
        except NotReadyError:
            raise
        except BestshotError as e:
            _record(ctx, rel, stage.name, e, task.sha256)
            task.outcome = f"error:{e.kind}"
            return task
        except OSError as e:
            _record(ctx, rel, stage.name, BestshotError(task.path, f"I/O error: {e.strerror or e}"), task.sha256)
            task.outcome = "error:io"
            return task
        except Exception as e:  # a bug or an input nobody foresaw: this file fails, the daemon goes on
            log.exception("internal error on %s at %s", rel, stage.name)
            _record(
                ctx, rel, stage.name, BestshotError(task.path, f"internal error: {type(e).__name__}: {e}"), task.sha256
            )
            task.outcome = "error:internal"
            return task
        if task.done:
            break
    return task


def run_set(ctx: Ctx, task: filing.SetTask) -> bool:
    for stage in SET_STAGES:
        try:
            stage.run(ctx, task)
        except Exception as e:  # recorded against the set; it is retried at the next reconcile
            err = e if isinstance(e, BestshotError) else BestshotError(None, f"{type(e).__name__}: {e}")
            _record(ctx, f"set_{task.set_id}", stage.name, err)
            return False
    return True


def _record(ctx: Ctx, rel: str, stage: str, e: BestshotError, sha: str | None = None) -> None:
    if isinstance(e, DuplicateError):  # not a failure: the user dropped an image bestshot already has
        log.warning("%s: %s", rel, e.reason)
    else:
        log.warning("%s failed at %s: %s", rel, stage, e.reason)
    with ctx.store.write() as conn:
        records.record_error(conn, rel, stage, e, sha)


def record_not_ready(ctx: Ctx, task_path_rel: str, e: NotReadyError, waited: float) -> None:
    _record(ctx, task_path_rel, "settle", NotReadyError(e.path, f"never completed after {waited:.0f} s: {e.reason}"))
