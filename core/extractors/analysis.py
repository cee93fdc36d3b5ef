"""Anomaly cues and the crop proposal as extractors, so the daemon's queue versions and runs
them like any sidecar: `anomalies` reads hands/pose/face/saliency, `crop` reads `anomalies` too.
They cost milliseconds; being extractors buys dependency order, per-image failure isolation and
recomputation when their version (or the detectors') changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from core.anomaly.detect import HandSuspicion
from core.anomaly.hand_model import HandModel
from core.anomaly.model import AnomalyReport
from core.anomaly.parts import PartsModel, shipped_parts_model
from core.anomaly.scorer import RegionScorer
from core.anomaly.settings import AnomalySettings
from core.crop.from_sidecars import NEEDED, anomaly_report, crop_for, inputs_from_results
from core.crop.preview import render_preview
from core.crop.settings import CropSettings
from core.errors import ExtractorError
from core.extractors.base import Extractor, Outcome, Output, SidecarResult
from core.imaging import DecodedImage


class AnomaliesExtractor(Extractor):
    name = "anomalies"
    # 2: the report keeps the regions its scorer suppressed; 3: `parts` scores; 4: every person
    # (person_unchecked regions, hands attached to their person); 5: parts refitted on them; 6: parts
    # refitted with single-joint exposure candidates (visible elbows, knees, ankles); 7: hand
    # plausibility candidates, selection on the held-out AUC without fold constants
    version = 7
    # The shipped parts model (core/anomaly/parts_model.json) whose scores reports of this version
    # carry. A refit changes every report's `parts`, so it must come with a version bump: a test
    # fails while the two disagree.
    parts_model_version: ClassVar[str] = "parts-e3ea31942d0c"
    outputs = (Output("json", file="anomalies/{sha}.json"),)
    requires = NEEDED
    optional = ("hand_clip", "regions")
    batch_size = 256

    def __init__(
        self,
        settings: AnomalySettings,
        scorer: RegionScorer | None = None,
        hand_model: HandModel | None = None,
        parts_model: PartsModel | None = None,
    ) -> None:
        self.settings = settings
        self.parts_model = parts_model or shipped_parts_model()
        # The daemon swaps in the user's calibration and hand model when it learns new ones;
        # reports name the scorer and the evidence names the hand model they were made with.
        self.scorer = scorer
        self.hand_model = hand_model

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        out: list[Outcome] = []
        for im, dep in zip(images, deps, strict=True):
            report = anomaly_report(
                inputs_from_results(dep),
                im.width,
                im.height,
                self.settings,
                rgb=im.rgb,
                scorer=self.scorer,
                hand_suspicion=hand_suspicion(self.hand_model, dep.get("hand_clip"), dep.get("regions")),
                parts_model=self.parts_model,
            )
            out.append(SidecarResult(report.to_dict()))
        return out


def hand_suspicion(
    model: HandModel | None, hand_clip: SidecarResult | None, regions: SidecarResult | None = None
) -> HandSuspicion | None:
    """The hand model's probabilities for an image's hands, when there is a model and the image's
    hands have the representation it was trained on (another CLIP model's embeddings, or another
    descriptor version, mean nothing to it)."""
    if model is None:
        return None
    vectors = hand_representations(regions, hand_clip).get(model.embedding_model)
    if vectors is None or vectors.shape[0] == 0 or vectors.shape[1] != model.dim:
        return None
    probs = model.probabilities(vectors.astype(np.float64))
    return HandSuspicion([float(p) for p in probs], model.version)


def embedding_model_id(hand_clip_payload: Mapping[str, object]) -> str:
    """Which embedding model made a hand_clip sidecar ("ViT-B-32/laion2b_s34b_b79k"; "/None" for
    the random-weights test model)."""
    return f"{hand_clip_payload.get('model')}/{hand_clip_payload.get('pretrained')}"


def hand_representations(regions: SidecarResult | None, hand_clip: SidecarResult | None) -> dict[str, np.ndarray]:
    """Every representation of an image's hands that its sidecars give, by id, one row per hand in
    the hands sidecar's order: the region descriptors ("regions-1"), the CLIP crop embeddings
    (the CLIP model's id) and, when both exist, the two side by side ("regions-1+<clip id>")."""
    out: dict[str, np.ndarray] = {}
    desc: np.ndarray | None = None
    desc_id = ""
    if regions is not None:
        arr = regions.arrays.get("descriptors")
        kinds = [r.get("kind") for r in regions.payload.get("regions", [])]
        n = int(regions.payload.get("hands", -1))
        if arr is not None and arr.ndim == 2 and len(kinds) == arr.shape[0] and kinds[:n] == ["hand"] * n:
            desc, desc_id = arr[:n].astype(np.float64), str(regions.payload.get("descriptor"))
            out[desc_id] = desc
    if hand_clip is not None:
        emb = hand_clip.arrays.get("embeddings")
        if emb is not None and emb.ndim == 2:
            clip_id = embedding_model_id(hand_clip.payload)
            out[clip_id] = emb.astype(np.float64)
            if desc is not None and emb.shape[0] == desc.shape[0]:
                out[f"{desc_id}+{clip_id}"] = np.hstack([desc, emb.astype(np.float64)])
    return out


class CropExtractor(Extractor):
    name = "crop"
    # 2: region ids index the report's anomalies / uncertain_regions; 3: regions that could not be
    # checked keep the full frame (verdict review), only evidence of a defect proposes a crop;
    # 4: people nobody could check (person_unchecked) route to review
    version = 4
    outputs = (
        Output("json", folder="labels", file="crops/{sha}.crop.json"),
        Output("bytes", key="preview_jpeg", folder="labels", file="crops/{sha}.crop.jpg"),
    )
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
