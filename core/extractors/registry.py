"""Build the enabled extractors in dependency order and run one pass of them over a batch.

`run_pass` is the failure boundary: whatever one extractor does with one image ends as an
Outcome for that (image, extractor) and never stops the other extractors or images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from core.anomaly.settings import AnomalySettings
from core.crop.settings import CropSettings
from core.errors import BestshotError, ConfigError, ExtractorError, ModelUnavailableError
from core.extractors.analysis import AnomaliesExtractor, CropExtractor
from core.extractors.base import Extractor, Outcome, SidecarResult
from core.extractors.clip import ClipExtractor
from core.extractors.face import FaceExtractor
from core.extractors.hand_clip import HandClipExtractor
from core.extractors.hands import HandsExtractor
from core.extractors.phash import PhashExtractor
from core.extractors.pose import PoseExtractor
from core.extractors.quality import QualityExtractor
from core.extractors.regions import RegionsExtractor
from core.extractors.saliency import SaliencyExtractor
from core.extractors.settings import ExtractorSettings
from core.imaging import DecodedImage

log = logging.getLogger(__name__)

# Listed in dependency order (`requires` and `optional`: face -> pose -> hands); build_extractors
# keeps this order.
EXTRACTOR_CLASSES: dict[str, type[Extractor]] = {
    "phash": PhashExtractor,
    "clip": ClipExtractor,
    "face": FaceExtractor,
    "pose": PoseExtractor,
    "hands": HandsExtractor,
    "hand_clip": HandClipExtractor,
    "regions": RegionsExtractor,
    "saliency": SaliencyExtractor,
    "quality": QualityExtractor,
    "anomalies": AnomaliesExtractor,
    "crop": CropExtractor,
}

_FACTORIES: dict[str, Callable[[ExtractorSettings, Path], Extractor]] = {
    "phash": lambda s, _m: PhashExtractor(s),
    "clip": ClipExtractor,
    "hands": lambda s, _m: HandsExtractor(s),
    "pose": lambda s, _m: PoseExtractor(s),
    "regions": lambda _s, _m: RegionsExtractor(),
    "face": lambda s, _m: FaceExtractor(s),
    "saliency": lambda s, _m: SaliencyExtractor(s),
    "quality": lambda s, _m: QualityExtractor(s),
}


def build_extractors(
    settings: ExtractorSettings,
    models_dir: Path,
    anomaly: AnomalySettings | None = None,
    crop: CropSettings | None = None,
) -> list[Extractor]:
    """The enabled extractors, dependencies first. Nothing loads a model here."""
    unknown = [n for n in settings.enabled if n not in EXTRACTOR_CLASSES]
    if unknown:
        raise ConfigError(
            None, f"extractors.enabled names unknown extractors {unknown}; known: {list(EXTRACTOR_CLASSES)}"
        )
    enabled = set(settings.enabled)
    for name in enabled:
        missing = [d for d in EXTRACTOR_CLASSES[name].requires if d not in enabled]
        if missing:
            raise ConfigError(None, f"extractor {name!r} needs {missing}; add them to extractors.enabled")
    built: dict[str, Extractor] = {}

    def shared_clip(s: ExtractorSettings, m: Path) -> ClipExtractor:
        # hand_clip embeds with the clip extractor's model when both run: one model in memory.
        clip = built.get("clip")
        return clip if isinstance(clip, ClipExtractor) else ClipExtractor(s, m)

    factories: dict[str, Callable[[ExtractorSettings, Path], Extractor]] = {
        **_FACTORIES,
        "hand_clip": lambda s, m: HandClipExtractor(shared_clip(s, m)),
        "anomalies": lambda _s, _m: AnomaliesExtractor(anomaly or AnomalySettings()),
        "crop": lambda _s, _m: CropExtractor(crop or CropSettings()),
    }
    for name in EXTRACTOR_CLASSES:
        if name in enabled:
            built[name] = factories[name](settings, models_dir)
    return list(built.values())


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _run_guarded(
    ext: Extractor, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]
) -> list[Outcome]:
    """Run a batch; if the call raises or miscounts, rerun image by image so only the culprit fails."""
    try:
        outs = ext.run(images, deps)
        if len(outs) == len(images):
            return list(outs)
        log.error("%s returned %d outcomes for %d images", ext.name, len(outs), len(images))
    except Exception:
        log.exception("%s raised on a batch of %d; retrying one by one", ext.name, len(images))
    if len(images) == 1:
        return [ExtractorError(images[0].path, f"{ext.name} failed and gave no result for this image")]
    result: list[Outcome] = []
    for im, dep in zip(images, deps, strict=True):
        try:
            one = ext.run([im], [dep])
            result.append(one[0] if len(one) == 1 else ExtractorError(im.path, f"{ext.name} gave {len(one)} outcomes"))
        except Exception as e:
            log.exception("%s failed on %s", ext.name, im.path)
            result.append(ExtractorError(im.path, f"{ext.name} raised {type(e).__name__}: {e}"))
    return result


def run_pass(
    extractors: Sequence[Extractor],
    images: Sequence[DecodedImage],
    done: Mapping[str, set[str]],
    prior: Mapping[str, Mapping[str, SidecarResult]] | None = None,
) -> dict[str, dict[str, Outcome]]:
    """Run every extractor once over the images that still need it.

    `done[sha]` names the extractors already stored for an image; they are skipped unless a
    pending extractor depends on them, in which case `prior[sha][name]` (the stored result)
    is used, or - when the caller passes none - the dependency is recomputed and returned too.
    Returns `{sha: {extractor name: SidecarResult | BestshotError}}` for what ran.
    """
    prior = prior or {}
    results: dict[str, dict[str, Outcome]] = {im.sha256: {} for im in images}
    have: dict[str, dict[str, Outcome]] = {im.sha256: dict(prior.get(im.sha256, {})) for im in images}
    by_name = {e.name: e for e in extractors}
    need: dict[str, set[str]] = {}
    for im in images:
        todo = {e.name for e in extractors if e.name not in done.get(im.sha256, set())}
        # Pull in dependencies that are neither pending nor available from the store.
        pending = set(todo)
        frontier = list(todo)
        while frontier:
            name = frontier.pop()
            for dep in by_name[name].requires:
                if dep in pending or dep in have[im.sha256]:
                    continue
                if dep not in by_name:
                    continue  # build_extractors rejects this configuration; guard for hand-built lists
                pending.add(dep)
                frontier.append(dep)
        need[im.sha256] = pending

    for ext in extractors:
        idx = [i for i, im in enumerate(images) if ext.name in need[im.sha256]]
        if not idx:
            continue
        ready: list[int] = []
        for i in idx:
            sha = images[i].sha256
            failed = _failed_dependency(ext, have[sha])
            if failed is None:
                ready.append(i)
            else:
                dep, err = failed
                results[sha][ext.name] = ExtractorError(images[i].path, f"dependency {dep} failed: {err}")
                have[sha][ext.name] = results[sha][ext.name]
        for chunk in _chunks(ready, max(1, ext.batch_size)):
            ims = [images[i] for i in chunk]
            deps = [_dep_results(ext, have[im.sha256]) for im in ims]
            for im, outcome in zip(ims, _run_guarded(ext, ims, deps), strict=True):
                results[im.sha256][ext.name] = outcome
                have[im.sha256][ext.name] = outcome
    return results


def _failed_dependency(ext: Extractor, have: Mapping[str, Outcome]) -> tuple[str, str] | None:
    for dep in ext.requires:
        got = have.get(dep)
        if got is None:
            return dep, "no result (extractor not enabled)"
        if isinstance(got, BestshotError):
            why = "unavailable: " + got.reason if isinstance(got, ModelUnavailableError) else got.reason
            return dep, why
    return None


def _dep_results(ext: Extractor, have: Mapping[str, Outcome]) -> dict[str, SidecarResult]:
    """Required results (present: `_failed_dependency` stopped the image otherwise) and the
    optional ones that are there."""
    return {d: r for d in (*ext.requires, *ext.optional) if isinstance(r := have.get(d), SidecarResult)}
