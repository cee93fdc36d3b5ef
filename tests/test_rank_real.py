"""The prior on real sidecars: real images, the real extractors and anomaly check, then a proposal."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from core.anomaly.detect import detect_anomalies
from core.anomaly.settings import AnomalySettings
from core.extractors.base import SidecarResult
from core.extractors.registry import build_extractors, run_pass
from core.extractors.settings import ExtractorSettings
from core.imaging import load
from core.rank.features import FeatureSpace, ImageSignals, missing_sources, summarise_anomaly_report
from core.rank.prior import prior_model
from core.rank.propose import Member, propose
from core.rank.settings import RankSettings
from core.sidecar_types import faces_from_payload, hands_from_payload, poses_from_payload

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_prior_prefers_the_original_over_a_blurred_copy(shared_data: Path, tmp_path: Path) -> None:
    sources = sorted((shared_data / "ai_portraits_hands" / "image").glob("*.png"))[:2]
    assert sources, "ai_portraits_hands/image has no PNGs"
    paths: list[Path] = []
    for src in sources:
        bgr = cv2.imread(str(src))
        (tmp_path / src.name).write_bytes(src.read_bytes())
        blurred = tmp_path / f"blurred_{src.name}"
        cv2.imwrite(str(blurred), cv2.GaussianBlur(bgr, (0, 0), 3))
        paths += [tmp_path / src.name, blurred]
    images = [load(p) for p in paths]
    # every extractor the ranking reads except CLIP, whose weights cannot be fetched here
    enabled = {"enabled": ["hands", "pose", "face", "saliency", "quality"]}
    extractors = build_extractors(ExtractorSettings.model_validate(enabled), tmp_path)
    results = run_pass(extractors, images, {})
    signals: list[ImageSignals] = []
    for im in images:
        out = results[im.sha256]
        assert all(isinstance(v, SidecarResult) for v in out.values()), out
        pl = {k: v.payload for k, v in out.items() if isinstance(v, SidecarResult)}
        report = detect_anomalies(
            hands_from_payload(pl["hands"]), poses_from_payload(pl["pose"]), faces_from_payload(pl["face"]),
            im.width, im.height, AnomalySettings(),
        )  # fmt: skip
        summary = summarise_anomaly_report(report.to_dict())
        assert summary["count"] == len(report.anomalies) == sum(summary["by_part"].values())
        sig = ImageSignals(pl["quality"], pl["face"], pl["hands"], pl["pose"], summary, False, None)
        assert missing_sources(sig) == ["embedding"]  # the quality payload's names are the ones read
        signals.append(sig)

    s = RankSettings()
    prior = prior_model(FeatureSpace.fit(signals, s.pca_components, s.pca_min_images), s.prior)
    for k in (0, 2):
        members = [Member(str(i), paths[i].name, signals[i]) for i in (k + 1, k)]  # blurred first
        r = propose(f"set{k}", members, prior, s)
        assert r.winner_name == paths[k].name, r.to_dict()
        assert r.source == "prior"
        assert {"sharper", "sharper subject"} & set(r.reasons), r.reasons
