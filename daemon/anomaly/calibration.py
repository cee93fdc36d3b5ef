"""The user's decisions as outcomes for the anomaly cues, the calibration learned from them, and
the scorer the `anomalies` extractor uses (core.anomaly.calibration).

Learned with every training run (`bestshot train`, every `rank.retrain_every_decisions` decisions,
nightly) and kept under models/anomaly/<version>.json; the version in force is in the database
state, loaded when the context is built. When a new one changes any score, the images of
undecided sets are re-analysed and proposed again; reports name the scorer they were made with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Connection

from core.anomaly.calibration import (
    CalibratedScorer,
    CueCalibration,
    RegionOutcome,
    cue_of,
    fit_calibration,
    outcomes_for_image,
)
from core.anomaly.model import AnomalyReport
from core.extractors.analysis import AnomaliesExtractor
from core.jsonfile import write_json_atomic
from core.review.regions import split_report
from daemon.anomaly.learning_data import DecidedImage, decided_images, reanalyse_open_sets
from daemon.context import Ctx
from daemon.extractors.sidecar_store import latest_payload
from daemon.store import records
from daemon.store.learned_state import CALIBRATION_KEY, calibration_dir, calibration_in_force

log = logging.getLogger(__name__)
STATE_KEY = CALIBRATION_KEY


def decision_outcomes(ctx: Ctx, conn: Connection, decided: Sequence[DecidedImage] | None = None) -> list[RegionOutcome]:
    """Outcomes of every flagged region (kept or suppressed) in the images the user decided. A
    region the user labelled on the review page is the label's outcome; the others follow from
    the decision."""
    out: list[RegionOutcome] = []
    for img in decided if decided is not None else decided_images(conn):
        payload = latest_payload(conn, img.sha256, "anomalies")
        if payload is not None:
            labelled, rest = split_report(AnomalyReport.from_dict(payload), img.regions)
            out += [RegionOutcome(cue_of(a), removed) for a, removed in labelled]
            out += outcomes_for_image(rest, img.role, img.crop_box, img.tags, ctx.cfg.anomaly.calibration)
    return out


def learn_calibration(ctx: Ctx, decided: Sequence[DecidedImage] | None = None) -> CueCalibration:
    """Fit from all decisions so far (`decided`, when the caller already read them), keep the
    file, put it in force and in the live extractor."""
    with ctx.store.read() as conn:
        outcomes = decision_outcomes(ctx, conn, decided)
    cal = fit_calibration(outcomes, ctx.cfg.anomaly.calibration)
    d = calibration_dir(ctx.cfg)
    d.mkdir(parents=True, exist_ok=True)
    target = d / f"{cal.version}.json"
    if not target.exists():
        write_json_atomic(target, cal.to_dict(), indent=2)
    with ctx.store.write() as conn:
        previous = calibration_in_force(ctx.cfg, conn)
        records.put_state(conn, STATE_KEY, cal.version)
        if cal.effective() != (previous.effective() if previous is not None else {}):
            n = reanalyse_open_sets(ctx, conn)
            log.info("re-analysing %d images of undecided sets with the new calibration", n)
    _use(ctx, cal)
    log.info("anomaly calibration %s from %d region outcomes over %d cues", cal.version, len(outcomes), len(cal.counts))
    return cal


def _use(ctx: Ctx, cal: CueCalibration) -> None:
    ext = ctx.extractor("anomalies")
    if isinstance(ext, AnomaliesExtractor):
        ext.scorer = CalibratedScorer(cal)
