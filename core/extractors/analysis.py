"""Anomaly cues and the crop proposal as extractors, so the daemon's queue versions and runs
them like any sidecar: `anomalies` reads hands/pose/face/saliency, `crop` reads `anomalies` too.
They cost milliseconds; being extractors buys dependency order, per-image failure isolation and
recomputation when their version (or the detectors') changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from core.anomaly.model import AnomalyReport
from core.anomaly.scorer import RegionScorer
from core.anomaly.settings import AnomalySettings
from core.crop.from_sidecars import NEEDED, anomaly_report, crop_for, inputs_from_results
from core.crop.preview import render_preview
from core.crop.settings import CropSettings
from core.errors import ExtractorError
from core.extractors.base import Extractor, Outcome, SidecarResult
from core.imaging import DecodedImage


class AnomaliesExtractor(Extractor):
    name = "anomalies"
    version = 2  # 2: the report keeps the regions its scorer suppressed
    requires = NEEDED
    batch_size = 256

    def __init__(self, settings: AnomalySettings, scorer: RegionScorer | None = None) -> None:
        self.settings = settings
        # The daemon swaps in the user's calibration when it learns a new one; reports made
        # before keep the scorer they name.
        self.scorer = scorer

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        out: list[Outcome] = []
        for im, dep in zip(images, deps, strict=True):
            report = anomaly_report(inputs_from_results(dep), im.width, im.height, self.settings, rgb=im.rgb,
                                    scorer=self.scorer)
            out.append(SidecarResult(report.to_dict()))
        return out


class CropExtractor(Extractor):
    name = "crop"
    version = 1
    requires = ("anomalies", *NEEDED)
    batch_size = 256

    def __init__(self, settings: CropSettings) -> None:
        self.settings = settings

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        out: list[Outcome] = []
        for im, dep in zip(images, deps, strict=True):
            anomalies = dep.get("anomalies")
            if anomalies is None:
                out.append(ExtractorError(im.path, "no anomaly report to crop against"))
                continue
            report = AnomalyReport.from_dict(anomalies.payload)
            proposal = crop_for(inputs_from_results(dep), report, im.width, im.height, self.settings)
            preview = render_preview(im.rgb, proposal, report)
            out.append(SidecarResult(proposal.to_dict(), {"preview_jpeg": np.frombuffer(preview, dtype=np.uint8)}))
        return out
