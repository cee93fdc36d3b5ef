"""Where the learned state is recorded: the state keys and the calibration file reader.

Kept free of extractor and model imports so that `bestshot status` can read them at once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from daemon import records

if TYPE_CHECKING:
    from core.anomaly.calibration import CueCalibration
    from core.config import Config

log = logging.getLogger(__name__)

CALIBRATION_KEY = "anomaly_calibration"
HAND_STATUS_KEY = "hand_model_status"  # why no model is in force, or what the last training found
TRAINING_KEY = "rank_training"  # what the last ranking training did (daemon.training)
EXTRACTORS_KEY = "extractors_availability"  # written by `run`/`scan` when they check the extractors


def calibration_dir(cfg: Config) -> Path:
    return cfg.path("models") / "anomaly"


def calibration_in_force(cfg: Config, conn: Connection) -> CueCalibration | None:
    """The calibration the root's database names; None before the first one is learned, or when
    its file cannot be read (logged: the cues then keep their geometric scores)."""
    version = records.get_state(conn, CALIBRATION_KEY)
    if not version:
        return None
    from core.anomaly.calibration import CueCalibration  # numpy: only once there is a calibration

    path = calibration_dir(cfg) / f"{version}.json"
    try:
        return CueCalibration.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.error("anomaly calibration %s unreadable (%s); cues keep their geometric scores", path, e)
        return None
