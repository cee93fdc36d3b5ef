"""ms/image for each extractor alone, one shared-view pass of all of them, and peak RSS.

    .venv/bin/python benchmarks/sidecars_isolated.py [--synthetic N] [--repeat R] [--device cpu]

Images: every photo under ../shared/data (or N synthetic 1024x1536 PNGs when it is absent or
--synthetic is given). Each extractor is timed alone on freshly decoded images, so it pays for
its own resizes and colour conversions; its model is loaded and warmed on one image first
(load time printed separately). Without CLIP weights the clip row uses the same architecture
with random weights: identical compute, and the row says so.
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.extractors.base import Extractor, SidecarResult  # noqa: E402
from core.extractors.clip import ClipExtractor  # noqa: E402
from core.extractors.hand_clip import HandClipExtractor  # noqa: E402
from core.extractors.registry import build_extractors, run_pass  # noqa: E402
from core.extractors.settings import ExtractorSettings  # noqa: E402
from core.imaging import DecodedImage, decode  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def image_bytes(synthetic: int) -> list[tuple[Path, bytes]]:
    if synthetic == 0 and SHARED.is_dir():
        files = sorted(
            p for p in SHARED.rglob("*") if p.suffix.lower() in (".jpg", ".png") and "hand_mask" not in p.parts
        )
        return [(p, p.read_bytes()) for p in files]
    rng = np.random.default_rng(0)
    out = []
    for i in range(max(synthetic, 8)):
        small = rng.integers(0, 256, size=(12, 8, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(small).resize((1024, 1536), Image.Resampling.BICUBIC))
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        out.append((Path(f"synthetic_{i}.png"), buf.getvalue()))
    return out


def decode_all(data: list[tuple[Path, bytes]]) -> list[DecodedImage]:
    return [decode(p, b) for p, b in data]


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", type=int, default=0, help="use N synthetic 1024x1536 images")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the image list")
    ap.add_argument("--device", default="auto", choices=["auto", "mps", "cuda", "cpu"])
    args = ap.parse_args()

    data = image_bytes(args.synthetic) * args.repeat
    settings = ExtractorSettings(device=args.device)
    models = REPO / "data" / "models"
    extractors = build_extractors(settings, models)
    notes: dict[str, str] = {}
    for i, e in enumerate(extractors):
        if isinstance(e, ClipExtractor) and not e.availability().available:
            extractors[i] = ClipExtractor(settings, models, random_weights_for_tests=True)
            notes["clip"] = "random weights (no checkpoint here): same compute"
    random_clip = next(e for e in extractors if isinstance(e, ClipExtractor))
    for i, e in enumerate(extractors):
        if isinstance(e, HandClipExtractor):  # it shares the clip model, so it gets the stand-in too
            extractors[i] = HandClipExtractor(random_clip)
            notes["hand_clip"] = "random weights, shared with clip"
    mp = sum(len(b) for _, b in data) / len(data) / 1e6
    print(f"{len(data)} images ({'synthetic 1024x1536' if args.synthetic or not SHARED.is_dir() else SHARED}),"
          f" mean file {mp:.2f} MB")  # fmt: skip

    t0 = time.perf_counter()
    decoded = decode_all(data)
    decode_ms = (time.perf_counter() - t0) * 1000 / len(data)
    px = np.mean([im.width * im.height for im in decoded]) / 1e6
    print(f"decode: {decode_ms:.1f} ms/image (mean {px:.2f} MP)")

    print(f"\n{'extractor':10s} {'load+warm s':>11s} {'ms/image':>9s}  note")
    isolated: dict[str, float] = {}
    for ext in extractors:
        images = decode_all(data)  # fresh views: nothing shared with the previous extractor
        deps = inputs_for(ext, extractors, images)  # computed outside its timing
        images = decode_all(data)
        t0 = time.perf_counter()
        ext.run(images[:1], deps[:1])
        warm = time.perf_counter() - t0
        images = decode_all(data)
        t0 = time.perf_counter()
        _timed_run(ext, images, deps)
        ms = (time.perf_counter() - t0) * 1000 / len(images)
        isolated[ext.name] = ms
        print(f"{ext.name:10s} {warm:11.2f} {ms:9.1f}  {notes.get(ext.name, '')}")
    total = sum(isolated.values())
    print(f"{'sum':10s} {'':11s} {total:9.1f}  (the floor for one image through every extractor)")

    images = decode_all(data)
    t0 = time.perf_counter()
    run_pass(extractors, images, {})
    shared_ms = (time.perf_counter() - t0) * 1000 / len(images)
    print(f"\nrun_pass, all extractors, shared decoded views: {shared_ms:.1f} ms/image "
          f"({1000 / shared_ms:.2f} images/s; {total / shared_ms:.2f}x the isolated sum)")  # fmt: skip
    print(f"peak RSS with all models loaded: {peak_rss_mb():.0f} MB")
    for e in extractors:
        e.close()


def inputs_for(
    ext: Extractor, extractors: list[Extractor], images: list[DecodedImage]
) -> list[dict[str, SidecarResult]]:
    """What `ext` reads for each image (its dependencies' results), by the other extractors."""
    by_name = {e.name: e for e in extractors}
    needed = _needs(ext, by_name)
    if not needed:
        return [{} for _ in images]
    outs = run_pass([e for e in extractors if e.name in needed], images, {})
    return [{n: r for n, r in outs[im.sha256].items() if isinstance(r, SidecarResult)} for im in images]


def _needs(ext: Extractor, by_name: dict[str, Extractor]) -> set[str]:
    """Everything `ext` reads, directly or through its dependencies."""
    out: set[str] = set()
    todo = list(ext.requires) + [n for n in ext.optional if n in by_name]
    while todo:
        n = todo.pop()
        if n not in out and n in by_name:
            out.add(n)
            todo += list(by_name[n].requires)
    return out


def _timed_run(ext: Extractor, images: list[DecodedImage], deps: list[dict[str, SidecarResult]]) -> None:
    step = max(1, ext.batch_size)
    for start in range(0, len(images), step):
        ext.run(images[start : start + step], deps[start : start + step])


if __name__ == "__main__":
    main()
