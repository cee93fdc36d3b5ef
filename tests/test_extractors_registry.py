"""The registry and run_pass: order, skipping what is done, dependencies, and per-image failure
isolation, with every real extractor over bad inputs (tiny, black, extreme strips)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import BestshotError, ConfigError, ExtractorError, ModelUnavailableError
from core.extractors.base import Extractor, Outcome, SidecarResult
from core.extractors.clip import ClipExtractor
from core.extractors.hand_clip import HandClipExtractor
from core.extractors.registry import EXTRACTOR_CLASSES, build_extractors, run_pass
from core.extractors.settings import ExtractorSettings
from core.imaging import DecodedImage
from tests.helpers import decoded

ALL = ["phash", "clip", "face", "pose", "hands", "hand_clip", "regions", "saliency", "quality", "anomalies", "crop"]


def person_like(seed: int, w: int = 200, h: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def extractors(tmp_path_factory: pytest.TempPathFactory) -> list[Extractor]:
    models = tmp_path_factory.mktemp("models")
    exts = build_extractors(ExtractorSettings(device="cpu"), models)
    # The real model code with random weights stands in for the weights this machine lacks;
    # hand_clip shares it, as build_extractors shares the clip it builds.
    clip = ClipExtractor(ExtractorSettings(device="cpu"), models, random_weights_for_tests=True)
    swap = {"clip": clip, "hand_clip": HandClipExtractor(clip)}
    return [swap.get(e.name, e) for e in exts]


def test_build_extractors_follows_dependency_order_and_enabled() -> None:
    exts = build_extractors(ExtractorSettings(), Path("/nonexistent"))
    assert [e.name for e in exts] == ALL
    assert list(EXTRACTOR_CLASSES) == ALL
    names = [e.name for e in exts]
    for e in exts:
        assert all(names.index(d) < names.index(e.name) for d in e.requires)
    some = build_extractors(ExtractorSettings(enabled=["quality", "phash", "saliency"]), Path("/x"))
    assert [e.name for e in some] == ["phash", "saliency", "quality"]


def test_build_extractors_rejects_unknown_and_missing_dependencies() -> None:
    with pytest.raises(ConfigError, match="nope"):
        build_extractors(ExtractorSettings(enabled=["phash", "nope"]), Path("/x"))
    with pytest.raises(ConfigError, match="saliency"):
        build_extractors(ExtractorSettings(enabled=["quality"]), Path("/x"))


@pytest.mark.slow
def test_bad_inputs_never_crash_any_extractor(extractors: list[Extractor]) -> None:
    images = [
        decoded(np.full((1, 1, 3), 200, np.uint8), "one_pixel.png"),
        decoded(np.zeros((512, 512, 3), np.uint8), "black.png"),
        decoded(person_like(1, 20000, 20), "wide_strip.png"),
        decoded(person_like(2, 3, 4000), "tall_strip.png"),
        decoded(person_like(3), "normal.png"),
    ]
    results = run_pass(extractors, images, {})
    for im in images:
        got = results[im.sha256]
        assert set(got) == set(ALL), im.path
        for name, outcome in got.items():
            if isinstance(outcome, BestshotError):
                # Allowed only as a clear, per-image error naming the file.
                assert outcome.path == im.path and outcome.reason, (name, outcome)
            else:
                assert isinstance(outcome, SidecarResult)
    # Every extractor gives a real result on the ordinary image and on the black one.
    for im in (images[1], images[4]):
        assert all(isinstance(o, SidecarResult) for o in results[im.sha256].values()), results[im.sha256]
    black = results[images[1].sha256]
    assert black["hands"].payload["hands"] == [] and black["face"].payload["faces"] == []  # type: ignore[union-attr]
    # Shapes are sane on the extreme strip.
    strip = results[images[2].sha256]["saliency"]
    assert isinstance(strip, SidecarResult) and strip.arrays["subject"].shape == (1, 320)
    assert isinstance(results[images[0].sha256]["quality"], SidecarResult)


class FailsOn(Extractor):
    """A third-party-style extractor that raises for one image and works for the rest."""

    name = "saliency"  # stands in the saliency slot so quality depends on it
    version = 1
    batch_size = 8

    def __init__(self, bad_sha: str, mode: str) -> None:
        self.bad_sha = bad_sha
        self.mode = mode
        self.calls = 0

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        self.calls += 1
        out: list[Outcome] = []
        for im in images:
            if im.sha256 == self.bad_sha:
                if self.mode == "raise":
                    raise RuntimeError("model exploded")
                out.append(ExtractorError(im.path, "cannot segment"))
            else:
                out.append(SidecarResult({"scale": 1.0}, {"subject": np.ones((2, 2), np.float16)}))
        return out


def _three() -> list[DecodedImage]:
    return [decoded(person_like(s, 40, 60), f"img{s}.png") for s in range(3)]


@pytest.mark.parametrize("mode", ["raise", "error"])
def test_failure_stays_with_its_image_and_its_dependents(mode: str, extractors: list[Extractor]) -> None:
    images = _three()
    bad = images[1]
    phash = next(e for e in extractors if e.name == "phash")
    quality = next(e for e in extractors if e.name == "quality")
    failing = FailsOn(bad.sha256, mode)
    results = run_pass([phash, failing, quality], images, {})
    for im in images:
        assert isinstance(results[im.sha256]["phash"], SidecarResult)
    err = results[bad.sha256]["saliency"]
    assert isinstance(err, ExtractorError) and err.path == bad.path
    assert ("model exploded" in err.reason) if mode == "raise" else ("cannot segment" in err.reason)
    dep_err = results[bad.sha256]["quality"]
    assert isinstance(dep_err, ExtractorError) and "dependency saliency failed" in dep_err.reason
    for im in (images[0], images[2]):
        assert isinstance(results[im.sha256]["saliency"], SidecarResult)
        assert isinstance(results[im.sha256]["quality"], SidecarResult)
    # One batch call, plus one call per image to isolate the culprit after a raise.
    assert failing.calls == (1 + 3 if mode == "raise" else 1)


def test_done_extractors_are_skipped_and_dependencies_come_from_prior(extractors: list[Extractor]) -> None:
    images = _three()
    phash = next(e for e in extractors if e.name == "phash")
    quality = next(e for e in extractors if e.name == "quality")
    saliency = FailsOn("none", "error")
    done = {im.sha256: {"phash", "saliency"} for im in images}
    prior = {
        im.sha256: {"saliency": SidecarResult({"scale": 1.0}, {"subject": np.ones((4, 4), np.float16)})}
        for im in images
    }
    results = run_pass([phash, saliency, quality], images, done, prior)
    assert saliency.calls == 0
    for im in images:
        assert set(results[im.sha256]) == {"quality"}
        q = results[im.sha256]["quality"]
        assert isinstance(q, SidecarResult) and q.payload["subject_fraction"] == 1.0
    # Without prior results the dependency is recomputed (and returned) rather than guessed.
    again = run_pass([phash, saliency, quality], images, done)
    assert saliency.calls == 1
    assert all(set(again[im.sha256]) == {"saliency", "quality"} for im in images)


def test_unavailable_extractor_reports_per_image_and_others_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    exts = build_extractors(ExtractorSettings(device="cpu", enabled=["phash", "clip"]), tmp_path / "models")
    images = _three()
    results = run_pass(exts, images, {})
    for im in images:
        assert isinstance(results[im.sha256]["phash"], SidecarResult)
        clip = results[im.sha256]["clip"]
        assert isinstance(clip, ModelUnavailableError) and "bestshot models fetch" in clip.fix
