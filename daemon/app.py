"""Build the shared context from a config: store (migrated), file ops, extractors."""

from __future__ import annotations

import logging
import time

from core.anomaly.calibration import CalibratedScorer
from core.config import Config
from core.errors import BestshotError
from core.extractors.analysis import AnomaliesExtractor
from core.extractors.registry import build_extractors
from daemon.anomaly.hand_model import hand_model_in_force
from daemon.context import Ctx
from daemon.files.areas import FOLDERS, area_problems
from daemon.files.fileops import FileOps
from daemon.files.health import Health
from daemon.store import records
from daemon.store.db import open_store
from daemon.store.learned_state import EXTRACTORS_KEY, LEARNED_KEYS, calibration_in_force, learned_versions

log = logging.getLogger(__name__)


def ensure_layout(cfg: Config) -> None:
    problems = area_problems(cfg)
    if problems:
        raise BestshotError(cfg.root, "; ".join(reason for _name, reason in problems))
    for name in FOLDERS:
        cfg.path(name).mkdir(parents=True, exist_ok=True)
    (cfg.path("labels") / "sessions").mkdir(parents=True, exist_ok=True)
    (cfg.path("labels") / "crops").mkdir(parents=True, exist_ok=True)


def build_ctx(cfg: Config, *, with_extractors: bool = True) -> Ctx:
    ensure_layout(cfg)
    store = open_store(cfg.db_url)
    extractors = build_extractors(cfg.extractors, cfg.path("models"), cfg.anomaly, cfg.crop) if with_extractors else []
    ctx = Ctx(cfg=cfg, store=store, fileops=FileOps(store, cfg.root), extractors=extractors, health=Health(cfg.root))
    _load_learned(ctx)
    if with_extractors:
        record_availability(ctx)
    return ctx


def record_availability(ctx: Ctx) -> None:
    """What each extractor said about itself, for `bestshot status` to show without loading them."""
    found = {}
    for e in ctx.extractors:
        a = e.availability()
        found[e.name] = {"version": e.version, "available": a.available, "reason": a.reason, "fix": a.fix}
    with ctx.store.write() as conn:
        records.put_state(conn, EXTRACTORS_KEY, {"checked_at": time.time(), "extractors": found})


def _load_learned(ctx: Ctx) -> None:
    """What the daemon learned for the anomaly report, into the live extractor: the user's
    calibration of the cues and the hand model, once each exists."""
    ext = ctx.extractor("anomalies")
    with ctx.store.read() as conn:
        ctx.learned = learned_versions(conn)
        if isinstance(ext, AnomaliesExtractor):
            cal = calibration_in_force(ctx.cfg, conn)
            ext.scorer = CalibratedScorer(cal) if cal is not None else None
            ext.hand_model = hand_model_in_force(ctx.cfg, conn)


def reload_learned(ctx: Ctx) -> bool:
    """Load what is in force again when the database names other versions than the live ones
    (`bestshot train` ran in another process); True when it did."""
    with ctx.store.read() as conn:
        now = learned_versions(conn)
    if now == ctx.learned:
        return False
    _load_learned(ctx)
    log.info("now using %s", ", ".join(f"{k} {v or 'none'}" for k, v in zip(LEARNED_KEYS, ctx.learned, strict=True)))
    return True
