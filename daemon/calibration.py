"""The user's decisions as outcomes for the anomaly cues, the calibration learned from them, and
the scorer the `anomalies` extractor uses (core.anomaly.calibration).

Learned with every training run (`bestshot train`, every `rank.retrain_every_decisions` decisions,
nightly) and kept under models/anomaly/<version>.json; the version in force is in the database
state, loaded when the context is built. When a new one changes any score, the images of
undecided sets are re-analysed and proposed again; reports name the scorer they were made with.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlalchemy import Connection, func, select

from core.anomaly.calibration import (
    CalibratedScorer,
    CueCalibration,
    RegionOutcome,
    Role,
    fit_calibration,
    outcomes_for_image,
)
from core.anomaly.model import AnomalyReport
from core.config import Config
from core.extractors.analysis import AnomaliesExtractor
from core.layout import from_db_path
from core.sidecar_types import Box
from daemon import records
from daemon.context import Ctx
from daemon.jobs import JobSpec, enqueue
from daemon.sidecar_store import atomic_write, latest_payload
from daemon.store.schema import decisions, images, set_members, sets

log = logging.getLogger(__name__)
STATE_KEY = "anomaly_calibration"


def calibration_dir(ctx: Ctx) -> Path:
    return ctx.cfg.path("models") / "anomaly"  # calibration_in_force reads the same folder


def decision_outcomes(ctx: Ctx, conn: Connection) -> list[RegionOutcome]:
    """Outcomes of every flagged region in the images of the user's latest decision per set
    (observed or logged; the daemon's own batch decisions and retractions teach nothing)."""
    s = ctx.cfg.anomaly.calibration
    newest = select(func.max(decisions.c.id)).group_by(decisions.c.set_id)
    out: list[RegionOutcome] = []
    for d in conn.execute(select(decisions).where(decisions.c.id.in_(newest)).order_by(decisions.c.id)):
        if d.source == "batch" or d.closed_reason == "retracted":
            continue
        deleted = set(json.loads(d.deleted or "[]"))
        crop = Box.from_dict(json.loads(d.crop_box)) if d.crop_box else None
        line = json.loads(d.line)
        image_tags: dict[str, list[str]] = (line.get("bestshot") or {}).get("image_tags") or {}
        members = conn.execute(select(set_members.c.sha256, images.c.original_name)
                               .join(images, images.c.sha256 == set_members.c.sha256)
                               .where(set_members.c.set_id == d.set_id)).all()
        for m in members:
            payload = latest_payload(conn, m.sha256, "anomalies")
            if payload is None:
                continue
            role: Role = "other"
            if m.sha256 == d.winner:
                role = "cropped" if crop is not None else ("other" if d.needs_crop else "approved")
            elif m.sha256 in deleted:
                role = "rejected"
            tags = image_tags.get(Path(from_db_path(m.original_name)).name, [])
            out += outcomes_for_image(AnomalyReport.from_dict(payload), role, crop, tags, s)
    return out


def learn_calibration(ctx: Ctx) -> CueCalibration:
    """Fit from all decisions so far, keep the file, put it in force and in the live extractor."""
    with ctx.store.read() as conn:
        outcomes = decision_outcomes(ctx, conn)
    cal = fit_calibration(outcomes, ctx.cfg.anomaly.calibration)
    d = calibration_dir(ctx)
    d.mkdir(parents=True, exist_ok=True)
    target = d / f"{cal.version}.json"
    if not target.exists():
        atomic_write(target, json.dumps(cal.to_dict(), indent=2).encode())
    with ctx.store.write() as conn:
        previous = calibration_in_force(ctx.cfg, conn)
        records.put_state(conn, STATE_KEY, cal.version)
        if cal.effective() != (previous.effective() if previous is not None else {}):
            n = _reanalyse_open_sets(ctx, conn)
            log.info("re-analysing %d images of undecided sets with the new calibration", n)
    _use(ctx, cal)
    log.info("anomaly calibration %s from %d region outcomes over %d cues", cal.version, len(outcomes), len(cal.counts))
    return cal


def _reanalyse_open_sets(ctx: Ctx, conn: Connection) -> int:
    """Queue the anomaly report and crop of every image in an undecided set: cheap (stored
    detections are reused), and their sets are proposed again once done (ranking.ready_sets)."""
    specs = [JobSpec(e.name, e.version) for e in ctx.extractors if e.name in ("anomalies", "crop")]
    shas = [r.sha256 for r in conn.execute(select(set_members.c.sha256).join(sets, sets.c.id == set_members.c.set_id)
                                           .where(sets.c.status == "filed"))]
    for sha in shas:
        enqueue(conn, sha, specs)
    return len(shas) if specs else 0


def calibration_in_force(cfg: Config, conn: Connection) -> CueCalibration | None:
    """The calibration the root's database names; None before the first one is learned, or when
    its file cannot be read (logged: the cues then keep their geometric scores)."""
    version = records.get_state(conn, STATE_KEY)
    if not version:
        return None
    path = cfg.path("models") / "anomaly" / f"{version}.json"
    try:
        return CueCalibration.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.error("anomaly calibration %s unreadable (%s); cues keep their geometric scores", path, e)
        return None


def load_calibration(ctx: Ctx) -> CueCalibration | None:
    """The calibration in force into the live `anomalies` extractor."""
    with ctx.store.read() as conn:
        cal = calibration_in_force(ctx.cfg, conn)
    if cal is not None:
        _use(ctx, cal)
    return cal


def _use(ctx: Ctx, cal: CueCalibration) -> None:
    ext = ctx.extractor("anomalies")
    if isinstance(ext, AnomaliesExtractor):
        ext.scorer = CalibratedScorer(cal)
