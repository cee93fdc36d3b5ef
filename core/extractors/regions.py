"""`regions`: a descriptor per hand and limb region (core.anomaly.regions), no model weights needed.

Rows of the `descriptors` array (sidecar/regions/<sha256>.npy) are the image's hands first, in
the hands sidecar's order, then the visible limb segments of each pose; the payload lists each
row's kind, source and crop box so readers never guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.anomaly.limbs import PoseView
from core.anomaly.regions import DESCRIPTOR_VERSION, DIM, GEOMETRY_DIM, hand_descriptor, limb_descriptors
from core.anomaly.world import hand_world_from_payload
from core.extractors.base import Extractor, Outcome, Output, SidecarResult
from core.imaging import DecodedImage
from core.sidecar_types import hands_from_payload, poses_from_payload


class RegionsExtractor(Extractor):
    name = "regions"
    version = 2  # 2: hands version 3 and pose version 2 find every person's hands and limbs
    outputs = (Output("npy", key="descriptors", file="regions/{sha}.npy"),)
    requires = ("hands", "pose")
    batch_size = 64

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        return [self._one(im, dep) for im, dep in zip(images, deps, strict=True)]

    def _one(self, im: DecodedImage, dep: Mapping[str, SidecarResult]) -> SidecarResult:
        hands_payload = dep["hands"].payload
        hands = hands_from_payload(hands_payload)
        world = hand_world_from_payload(hands_payload)
        rows: list[np.ndarray] = []
        regions: list[dict[str, Any]] = []
        for i, (hand, wl) in enumerate(zip(hands, world, strict=True)):
            vec, box = hand_descriptor(im.rgb, hand, wl)
            rows.append(vec)
            regions.append({"kind": "hand", "source": f"hand:{i}", "box": list(box)})
        for j, pose in enumerate(poses_from_payload(dep["pose"].payload)):
            scale = PoseView(pose, im.width, im.height, 0.5).body_scale()
            for source, vec, box in limb_descriptors(im.rgb, pose, j, scale):
                rows.append(vec)
                regions.append({"kind": "limb", "source": source, "box": list(box)})
        arr = np.stack(rows).astype(np.float32) if rows else np.zeros((0, DIM), np.float32)
        payload = {
            "descriptor": f"regions-{DESCRIPTOR_VERSION}",
            "dim": DIM,
            "geometry_dim": GEOMETRY_DIM,
            "regions": regions,
            "hands": len(hands),
        }
        return SidecarResult(payload, {"descriptors": np.ascontiguousarray(arr)})
