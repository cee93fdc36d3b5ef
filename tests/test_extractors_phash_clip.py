"""phash and clip extractors: real imagehash, real open_clip code (random weights), real weight lookup."""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from core.errors import ModelUnavailableError
from core.extractors.clip import ClipExtractor
from core.extractors.device import available_devices, pick_device
from core.extractors.phash import PhashExtractor
from core.extractors.settings import ClipSettings, ExtractorSettings
from core.extractors.weights import (
    FETCH_FIX,
    clip_tag,
    fetch_clip_weights,
    list_models,
    resolve_clip_weights,
)
from core.imaging import decode
from tests.helpers import decoded, random_clip_checkpoint

REPO_ID = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def smooth(seed: int, w: int = 256, h: int = 384) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


@pytest.mark.shared_data
def test_phash_matches_imagehash_on_the_file(shared_data: Path) -> None:
    files = sorted((shared_data / "ai_malformed_hands").glob("*.jpg")) + sorted(
        (shared_data / "ai_people_flux").glob("*.png")
    )
    assert files
    ext = PhashExtractor()
    images = [decode(f, f.read_bytes()) for f in files]
    outs = ext.run(images, [{} for _ in images])
    for f, out in zip(files, outs, strict=True):
        assert not isinstance(out, Exception)
        assert out.payload["phash"] == str(imagehash.phash(Image.open(f)))
        assert len(out.payload["phash"]) == 16


def test_phash_separates_different_images_and_keeps_a_resize() -> None:
    a, b = smooth(1), smooth(2)
    resized = np.asarray(Image.fromarray(a).resize((128, 192), Image.Resampling.BILINEAR))
    ext = PhashExtractor()
    ha, hb, hr = (ext.run([decoded(x)], [{}])[0].payload["phash"] for x in (a, b, resized))  # type: ignore[union-attr]
    dist = imagehash.hex_to_hash
    assert dist(ha) - dist(hr) <= 4
    assert dist(ha) - dist(hb) > 10


def test_pick_device_prefers_accelerators_and_refuses_missing_ones() -> None:
    devices = available_devices()
    assert devices[-1] == "cpu"
    assert pick_device("auto") == devices[0]
    assert pick_device("cpu") == "cpu"
    for wanted in ("mps", "cuda"):  # Literal members, as DevicePref wants
        if wanted not in devices:
            with pytest.raises(ModelUnavailableError) as e:
                pick_device(wanted)
            assert "extractors.device" in e.value.fix


@pytest.fixture(scope="module")
def random_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipExtractor:
    ext = ClipExtractor(
        ExtractorSettings(device="cpu"), tmp_path_factory.mktemp("models"), random_weights_for_tests=True
    )
    assert ext.availability().available
    return ext


@pytest.mark.slow
def test_clip_random_weights_gives_unit_512d_deterministic_embeddings(random_clip: ClipExtractor) -> None:
    imgs = [decoded(smooth(s)) for s in (1, 2, 3)]
    outs = random_clip.run(imgs, [{} for _ in imgs])
    embs = []
    for out in outs:
        assert not isinstance(out, Exception)
        assert out.payload == {"model": "ViT-B-32", "pretrained": None, "dim": 512}
        e = out.arrays["embedding"]
        assert e.dtype == np.float32 and e.shape == (512,)
        assert abs(float(np.linalg.norm(e)) - 1.0) < 1e-5
        embs.append(e)
    # Same image again, alone rather than in a batch: same embedding.
    again = random_clip.run([decoded(smooth(1))], [{}])[0]
    assert not isinstance(again, Exception)
    np.testing.assert_allclose(again.arrays["embedding"], embs[0], atol=1e-5)
    # Different images differ (random weights still see the pixels).
    assert float(embs[0] @ embs[1]) < 0.9999


@pytest.mark.slow
def test_clip_random_weights_are_the_same_in_a_new_extractor(random_clip: ClipExtractor, tmp_path: Path) -> None:
    other = ClipExtractor(ExtractorSettings(device="cpu"), tmp_path, random_weights_for_tests=True)
    img = decoded(smooth(7))
    a, b = random_clip.run([img], [{}])[0], other.run([img], [{}])[0]
    assert not isinstance(a, Exception) and not isinstance(b, Exception)
    np.testing.assert_allclose(a.arrays["embedding"], b.arrays["embedding"], atol=1e-5)


def test_clip_without_weights_is_unavailable_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    ext = ClipExtractor(ExtractorSettings(device="cpu"), tmp_path / "models")
    avail = ext.availability()
    assert not avail.available
    assert REPO_ID in avail.reason and str(tmp_path / "hf_home" / "hub") in avail.reason
    assert "bestshot models fetch" in avail.fix and "extractors.clip.checkpoint" in avail.fix
    img = decoded(smooth(1), "a.png")
    out = ext.run([img], [{}])
    assert isinstance(out[0], ModelUnavailableError)
    assert out[0].fix == FETCH_FIX and out[0].path == Path("a.png")


def test_missing_configured_checkpoint_is_unavailable(tmp_path: Path) -> None:
    settings = ExtractorSettings(device="cpu", clip=ClipSettings(checkpoint=tmp_path / "nope.safetensors"))
    avail = ClipExtractor(settings, tmp_path).availability()
    assert not avail.available
    assert "nope.safetensors" in avail.reason and "extractors.clip.checkpoint" in avail.fix


def test_unknown_pretrained_tag_is_unavailable(tmp_path: Path) -> None:
    settings = ExtractorSettings(device="cpu", clip=ClipSettings(pretrained="no_such_tag"))
    avail = ClipExtractor(settings, tmp_path).availability()
    assert not avail.available and "no_such_tag" in avail.reason


def _fake_hub_file(cache: Path, repo_id: str, filename: str) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/file}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    f = repo / "snapshots" / rev / filename
    f.parent.mkdir(parents=True)
    f.write_bytes(b"weights")
    return f


def test_weights_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    models = tmp_path / "models"
    clip = ClipSettings()
    tag = clip_tag(clip.model, clip.pretrained)
    assert tag.repo_id == REPO_ID
    assert not resolve_clip_weights(clip, models, tag).found

    user = _fake_hub_file(tmp_path / "hf_home" / "hub", REPO_ID, "open_clip_pytorch_model.bin")
    got = resolve_clip_weights(clip, models, tag)
    assert (got.path, got.source) == (user, "hf_cache")

    ours = _fake_hub_file(models / "huggingface" / "hub", REPO_ID, "open_clip_model.safetensors")
    got = resolve_clip_weights(clip, models, tag)
    assert (got.path, got.source) == (ours, "models_dir")

    ckpt = tmp_path / "mine.safetensors"
    ckpt.write_bytes(b"x")
    got = resolve_clip_weights(clip.model_copy(update={"checkpoint": ckpt}), models, tag)
    assert (got.path, got.source) == (ckpt, "checkpoint")


def test_fetch_uses_what_is_already_here_and_never_downloads_over_a_bad_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    models = tmp_path / "models"
    ours = _fake_hub_file(models / "huggingface" / "hub", REPO_ID, "open_clip_model.safetensors")
    assert fetch_clip_weights(ExtractorSettings(), models) == ours
    bad = ExtractorSettings(clip=ClipSettings(checkpoint=tmp_path / "missing.pt"))
    with pytest.raises(ModelUnavailableError, match=r"missing\.pt"):
        fetch_clip_weights(bad, models)


def test_list_models_reports_presence_and_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    rows = {r.name: r for r in list_models(ExtractorSettings(), tmp_path / "models")}
    assert not rows["open_clip"].present and "bestshot models fetch" in rows["open_clip"].note
    for name in ("u2netp", "selfie_segmentation", "hand_landmark", "pose_landmark", "brisque_svm"):
        assert rows[name].present and rows[name].size_bytes > 1000, name
    heavy = {r.name: r for r in list_models(ExtractorSettings(pose_model_complexity=2), tmp_path)}
    assert heavy["pose_landmark"].configured == "model_complexity=2"


@pytest.mark.slow
def test_clip_loads_a_configured_checkpoint_file(random_clip: ClipExtractor, tmp_path: Path) -> None:
    """The real weights path: a checkpoint file on disk, loaded by open_clip, used for embeddings.
    The file holds the same seeded random weights as the test model (in fp16 to halve the write),
    so both must embed an image alike."""
    settings = ExtractorSettings(device="cpu", clip=ClipSettings(checkpoint=random_clip_checkpoint(tmp_path)))
    ext = ClipExtractor(settings, tmp_path)
    assert ext.availability().available
    img = decoded(smooth(5))
    got, ref = ext.run([img], [{}])[0], random_clip.run([img], [{}])[0]
    assert not isinstance(got, Exception) and not isinstance(ref, Exception)
    assert got.payload["pretrained"] == "laion2b_s34b_b79k"
    assert float(got.arrays["embedding"] @ ref.arrays["embedding"]) > 0.999
    ext.close()
