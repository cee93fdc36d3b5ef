"""From extractor results to an anomaly report and a crop proposal, for the daemon and the CLI.

A missing or failed hands/pose sidecar never yields a clean report: the image is `uncertain`
and the reason names the extractor and why it has no result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from core.anomaly.detect import HandSuspicion, detect_anomalies
from core.anomaly.model import AnomalyReport
from core.anomaly.parts import PartsModel, part_features
from core.anomaly.scorer import RegionScorer
from core.anomaly.settings import AnomalySettings
from core.anomaly.world import hand_world_from_payload
from core.crop.proposal import CropProposal, propose_crop
from core.crop.settings import CropSettings
from core.errors import BestshotError
from core.extractors.base import Outcome, SidecarResult
from core.sidecar_types import (
    Face,
    Hand,
    Pose,
    SubjectMask,
    faces_from_payload,
    hands_from_payload,
    poses_from_payload,
)

NEEDED = ("hands", "pose", "face", "saliency")


@dataclass
class CropInputs:
    hands: list[Hand] = field(default_factory=list)
    poses: list[Pose] = field(default_factory=list)
    faces: list[Face] = field(default_factory=list)
    subject: SubjectMask | None = None
    missing: dict[str, str] = field(default_factory=dict)  # extractor -> why it has no result
    # Per hand, the hand model's world landmarks (None for sidecars before hands version 2).
    hand_world: list[np.ndarray | None] | None = None


def subject_from_result(result: SidecarResult) -> SubjectMask | None:
    arr = result.arrays.get("subject")
    if arr is None or "scale" not in result.payload:
        return None
    return SubjectMask(np.asarray(arr, dtype=np.float32), float(result.payload["scale"]))


def inputs_from_results(results: Mapping[str, Outcome | None]) -> CropInputs:
    """Typed inputs from `{extractor name: result, error or None}`."""
    out = CropInputs()
    for name in NEEDED:
        got = results.get(name)
        if isinstance(got, BestshotError):
            out.missing[name] = got.reason + (f" (fix: {got.fix})" if hasattr(got, "fix") else "")
            continue
        if got is None:
            out.missing[name] = "no result (extractor not enabled or not run)"
            continue
        if name == "hands":
            out.hands = hands_from_payload(got.payload)
            out.hand_world = hand_world_from_payload(got.payload)
        elif name == "pose":
            out.poses = poses_from_payload(got.payload)
        elif name == "face":
            out.faces = faces_from_payload(got.payload)
        else:
            out.subject = subject_from_result(got)
            if out.subject is None:
                out.missing[name] = "saliency result has no subject mask"
    return out


def anomaly_report(
    inputs: CropInputs,
    width: int,
    height: int,
    anomaly_settings: AnomalySettings,
    rgb: np.ndarray | None = None,
    scorer: RegionScorer | None = None,
    hand_suspicion: HandSuspicion | None = None,
    parts_model: PartsModel | None = None,
) -> AnomalyReport:
    """`parts_model`: scores P(error) per body part into the report's `parts` (none without it)."""
    report = detect_anomalies(
        inputs.hands,
        inputs.poses,
        inputs.faces,
        width,
        height,
        anomaly_settings,
        subject=inputs.subject,
        rgb=rgb,
        hand_world=inputs.hand_world,
        scorer=scorer,
        hand_suspicion=hand_suspicion,
    )
    if inputs.missing:
        reasons = [f"{name} sidecar missing: {why}" for name, why in inputs.missing.items()] + report.reasons
        # Without hands or pose nobody checked the anatomy: that is not a clean image.
        unchecked = any(n in inputs.missing for n in ("hands", "pose"))
        report = dataclasses.replace(report, reasons=reasons, uncertain=report.uncertain or unchecked)
    if parts_model is not None:
        parts = parts_model.score(
            part_features(inputs.hands, inputs.poses, inputs.faces, report, inputs.hand_world, anomaly_settings)
        )
        flagged = [f"{k} {v['score']:.2f} >= {v['threshold']:.2f}" for k, v in parts.items() if v["flag"]]
        notes = [f"part evidence ({parts_model.version}): " + ", ".join(flagged)] if flagged else []
        report = dataclasses.replace(report, parts=parts, reasons=report.reasons + notes)
    return report


def crop_for(
    inputs: CropInputs, report: AnomalyReport, width: int, height: int, crop_settings: CropSettings
) -> CropProposal:
    return propose_crop(
        width, height, report, faces=inputs.faces, poses=inputs.poses, subject=inputs.subject, settings=crop_settings
    )


def analyse(
    inputs: CropInputs,
    width: int,
    height: int,
    anomaly_settings: AnomalySettings,
    crop_settings: CropSettings,
    rgb: np.ndarray | None = None,
    scorer: RegionScorer | None = None,
    parts_model: PartsModel | None = None,
) -> tuple[AnomalyReport, CropProposal]:
    report = anomaly_report(inputs, width, height, anomaly_settings, rgb, scorer, parts_model=parts_model)
    return report, crop_for(inputs, report, width, height, crop_settings)
