"""Where the learned state is recorded: the state keys and the calibration file reader.

Kept free of extractor and model imports so that `bestshot status` can read them at once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from core.errors import BestshotError
from daemon.store import records

if TYPE_CHECKING:
    from core.anomaly.calibration import CueCalibration
    from core.config import Config

log = logging.getLogger(__name__)

CALIBRATION_KEY = "anomaly_calibration"
HAND_STATUS_KEY = "hand_model_status"  # why no model is in force, or what the last training found
TRAINING_KEY = "rank_training"  # what the last ranking training did (daemon.rank.train)
EXTRACTORS_KEY = "extractors_availability"  # written by `run`/`scan` when they check the extractors
HAND_MODEL_KEY = "hand_model"  # the hand model in force (daemon.anomaly.hand_model)
RANK_MODEL_KEY = "rank_model"  # the ranking model in force (daemon.rank.train)
# What the live extractors and ranking use; a daemon compares these to notice another process's training.
LEARNED_KEYS = (CALIBRATION_KEY, HAND_MODEL_KEY, RANK_MODEL_KEY)
IN_FORCE_FILE = "in_force.json"  # under models/: rewritten after a training run has committed


def learned_versions(conn: Connection) -> tuple[str | None, ...]:
    return tuple(records.get_state(conn, k) for k in LEARNED_KEYS)


def announce_in_force(cfg: Config, versions: tuple[str | None, ...]) -> None:
    """Write models/in_force.json once the training run's state is committed. Model files are
    written before the database names them, so their own file events can reach a running daemon
    before the commit; this file's event comes after it, so the daemon always sees the change."""
    from core.atomicfile import atomic_write

    body = dict(zip(LEARNED_KEYS, versions, strict=True))
    atomic_write(cfg.path("models") / IN_FORCE_FILE, (json.dumps(body, indent=1) + "\n").encode())


def calibration_dir(cfg: Config) -> Path:
    return cfg.path("models") / "anomaly"


def calibration_in_force(cfg: Config, conn: Connection) -> CueCalibration | None:
    """The calibration the root's database names; None before the first one is learned, or when
    its file cannot be read (logged: the cues then keep their geometric scores)."""
    version = records.get_state(conn, CALIBRATION_KEY)
    if not version:
        return None
    path = calibration_dir(cfg) / f"{version}.json"
    try:
        return _read_calibration(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.error("anomaly calibration %s unreadable (%s); cues keep their geometric scores", path, e)
        return None


def _read_calibration(path: Path) -> CueCalibration:
    from core.anomaly.calibration import CueCalibration  # numpy: only once there is a calibration

    return CueCalibration.from_dict(json.loads(path.read_text()))


def unreadable_learned_files(cfg: Config, conn: Connection) -> list[BestshotError]:
    """The learned files the database names as in force that cannot be read. The daemon goes on
    without each (geometric cue scores, hands not scored, the prior's ranking) and only logs it;
    `status` lists these so that running without them does not pass unnoticed. (Each model's
    module is imported only when the database names one: status stays light.)"""
    out: list[BestshotError] = []
    cal = records.get_state(conn, CALIBRATION_KEY)
    if cal:
        path = calibration_dir(cfg) / f"{cal}.json"
        try:
            _read_calibration(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            out.append(
                BestshotError(path, f"the anomaly calibration in force cannot be read ({e}); cues use geometric scores")
            )
    hand = records.get_state(conn, HAND_MODEL_KEY)
    if hand:
        from core.anomaly.hand_model import HandModel

        path = cfg.path("models") / "hands" / f"{hand}.json"  # daemon.anomaly.hand_model.models_dir
        try:
            HandModel.load(path)
        except (BestshotError, ValueError) as e:
            out.append(BestshotError(path, f"the hand model in force cannot be read ({e}); hands are not scored"))
    rank = records.get_state(conn, RANK_MODEL_KEY)
    if rank:
        # Read, not parsed as a model: core.rank.model costs status ~0.1 s of imports, and a file
        # this program wrote atomically fails by being missing or unreadable, not half-valid.
        from core.jsonfile import read_json_object

        path = cfg.path("models") / "rank" / f"{rank}.json"  # daemon.rank.ranking.rank_dir
        try:
            read_json_object(path, "ranking model", BestshotError)
        except BestshotError as e:
            out.append(BestshotError(path, f"the ranking model in force cannot be read ({e.reason}); the prior ranks"))
    return out
