"""Sidecar throughput on one machine in one run: each extractor alone, then all of them end to end
through the daemon's job queue, their ratio, and peak RSS with every model loaded.

    .venv/bin/python benchmarks/sidecars.py [--synthetic N] [--device cpu] [--persons N] [--persons-only]
                                            [--memory-only]

Images: every photo under ../shared/data (or N synthetic 1024x1536 PNGs when it is absent or
--synthetic is given). The same extractor instances serve both measurements, so models are
loaded and warm before either is timed.

- Alone: each extractor runs over freshly decoded images (it pays for its own resizes and colour
  conversions, not for the decode); quality gets saliency's results computed outside its timing.
  The sum of these is the floor for one image through every extractor.
- End to end: the daemon's own pipeline (daemon/pipeline.Pipeline) over a temp root's inbox,
  without its duplicates, export and ranking steps: ingest (read, sha256, full decode, metadata,
  jobs enqueued, pixels handed to the first pass; a full hand-off runs that pass during ingest),
  then rounds until the queue is empty: every pending extractor, pHash included, on shared views
  of the decoded pixels, and the DB rows and sidecar files. Ingest + queue is compared with the
  floor. Ratio = floor / measured time per image (>= 0.9 is the aim).
- Per person (`--persons N`, with ../shared/data/anatomy_dev): face, pose and hands alone on N
  one-person images ("person jogging") and N five-person images ("five people playing
  volleyball"), spread over the generators: ms/image, people and hands found per image, and the
  five-person cost as a ratio of the one-person cost measured in the same run.
- Idle memory (`--memory-only` for just this): each configuration (with and without CLIP) in a
  fresh process, as the daemon goes through it: RSS idle before the first image, with every model
  loaded by a pass, after `unload_models` (what extractors.unload_idle_seconds triggers) twice over,
  and the reload cost (one image right after an unload against one warm).
- CLIP weights cannot be downloaded here: ClipExtractor(random_weights_for_tests=True) is swapped
  into the daemon's extractors before registration, so clip jobs are queued and its model compute
  (the real ViT-B-32 architecture) is included; only the weights are random.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")  # keep MediaPipe's C++ INFO lines out of the figures
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from sidecars_isolated import decode_all, image_bytes, inputs_for, peak_rss_mb  # noqa: E402

from core.config import load_config  # noqa: E402
from core.extractors.base import Extractor, SidecarResult  # noqa: E402
from core.extractors.clip import ClipExtractor  # noqa: E402
from core.extractors.hand_clip import HandClipExtractor  # noqa: E402
from core.extractors.registry import run_pass  # noqa: E402
from daemon.app import build_ctx  # noqa: E402
from daemon.context import Ctx  # noqa: E402
from daemon.extractors import jobs  # noqa: E402
from daemon.extractors.idle_models import tune_malloc, unload_models  # noqa: E402
from daemon.pipeline import Pipeline  # noqa: E402

ALL = ["phash", "clip", "face", "pose", "hands", "hand_clip", "saliency", "quality"]


def alone(extractors: list[Extractor], data: list[tuple[Path, bytes]]) -> dict[str, float]:
    """ms/image for each extractor by itself over fresh decodes; warms (loads) each model first."""
    out: dict[str, float] = {}
    for ext in extractors:
        deps = inputs_for(ext, extractors, decode_all(data))
        ext.run(decode_all(data[:1]), deps[:1])  # load + warm, untimed
        images = decode_all(data)
        step = max(1, ext.batch_size)
        t0 = time.perf_counter()
        for start in range(0, len(images), step):
            ext.run(images[start : start + step], deps[start : start + step])
        out[ext.name] = (time.perf_counter() - t0) * 1000 / len(images)
    return out


PERSON_GROUPS = {"1-person": "person_jogging", "5-person": "five_people_playing_volleyball"}
PERSON_EXTRACTORS = ["face", "pose", "hands"]


def persons_cost(n: int) -> None:
    """ms/image of the per-person detectors on one-person against five-person images."""
    from core.extractors.registry import build_extractors
    from core.extractors.settings import ExtractorSettings
    from core.sidecar_types import hands_from_payload, poses_from_payload

    base = REPO.parent / "shared" / "data" / "anatomy_dev" / "images"
    if not base.is_dir():
        print("\nper person: ../shared/data/anatomy_dev is absent, skipped")
        return
    extractors = build_extractors(ExtractorSettings(enabled=PERSON_EXTRACTORS), Path(tempfile.gettempdir()))
    rows: dict[str, dict[str, float]] = {}
    for group, prompt in PERSON_GROUPS.items():
        files = sorted(base.glob(f"*/{prompt}/*"))
        picked = [files[round(i * (len(files) - 1) / max(n - 1, 1))] for i in range(min(n, len(files)))]
        data = [(p, p.read_bytes()) for p in picked]
        row: dict[str, float] = {}
        for ext in extractors:
            deps = inputs_for(ext, extractors, decode_all(data))
            ext.run(decode_all(data[:1]), deps[:1])  # load + warm, untimed
            images = decode_all(data)
            t0 = time.perf_counter()
            outs = ext.run(images, deps)
            row[ext.name] = (time.perf_counter() - t0) * 1000 / len(images)
            payloads = [o.payload for o in outs if isinstance(o, SidecarResult)]
            if ext.name == "pose":
                row["people"] = sum(len(poses_from_payload(p)) for p in payloads) / len(images)
            if ext.name == "hands":
                row["hands_found"] = sum(len(hands_from_payload(p)) for p in payloads) / len(images)
                row["from_pose_crops"] = sum(
                    sum(1 for h in hands_from_payload(p) if h.pose is not None) for p in payloads
                ) / len(images)
        row["total"] = sum(row[e] for e in PERSON_EXTRACTORS)
        rows[group] = row
    for e in extractors:
        e.close()
    print(f"\nper person ({n} images per group, anatomy_dev): ms/image alone")
    cols = [*PERSON_EXTRACTORS, "total", "people", "hands_found", "from_pose_crops"]
    print(f"{'group':10s}" + "".join(f"{c:>16s}" for c in cols))
    for group, row in rows.items():
        print(f"{group:10s}" + "".join(f"{row[c]:16.1f}" for c in cols))
    one, five = rows["1-person"], rows["5-person"]
    print(
        f"5-person / 1-person: total {five['total'] / one['total']:.2f}x, pose {five['pose'] / one['pose']:.2f}x, "
        f"hands {five['hands'] / one['hands']:.2f}x"
    )


def end_to_end(ctx: Ctx, data: list[tuple[Path, bytes]]) -> tuple[float, float, dict[str, dict[str, int]]]:
    """(ingest ms/image, queue ms/image, job counts by kind and state)."""
    inbox = ctx.cfg.path("inbox")
    old = time.time() - 3600  # settled long ago: registration does not wait for stable_seconds
    for i, (p, b) in enumerate(data):
        f = inbox / f"{i:03d}_{p.parent.name}_{p.name}"
        f.write_bytes(b)
        os.utime(f, (old, old))
    pipeline = Pipeline(ctx, without=("closing open sets", "duplicates", "parquet export", "ranking"))
    ingested: list[float] = []
    t0 = time.perf_counter()
    pipeline.run_to_completion(recover=False, queued=lambda _n: ingested.append(time.perf_counter()))
    t1 = time.perf_counter()
    ingest_s, queue_s = ingested[0] - t0, t1 - ingested[0]
    if pipeline.engine.stats["registered"] != len(data):
        raise SystemExit(f"expected {len(data)} images registered, got {pipeline.engine.stats}")
    with ctx.store.read() as conn:
        counts = jobs.counts_by_state(conn)
    return ingest_s * 1000 / len(data), queue_s * 1000 / len(data), counts


def rss_mb() -> float:
    """Resident memory now (not the peak), as `ps` reports it on macOS and Linux."""
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(os.getpid())], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


def idle_memory(config: str, data: list[tuple[Path, bytes]], device: str) -> None:
    """One configuration in this (fresh) process, as the daemon goes through it: idle before its
    first image (start-up done, libraries in, no model), every model loaded by a pass, unloaded as
    after extractors.unload_idle_seconds, twice; and one image right after an unload against warm."""
    names = ALL if config == "with CLIP" else [n for n in ALL if n not in ("clip", "hand_clip")]
    with tempfile.TemporaryDirectory(prefix="bestshot-idle-") as tmp:
        cfg = load_config(
            None, root=Path(tmp) / "root", env={}, overrides={"extractors": {"enabled": names, "device": device}}
        )
        ctx = build_ctx(cfg)
        for e in ctx.extractors:  # the daemon's start-up reconcile asks each (imports its libraries)
            e.availability()
        if config == "with CLIP":
            clip = ClipExtractor(cfg.extractors, cfg.path("models"), random_weights_for_tests=True)
            ctx.extractors = [
                clip if e.name == "clip" else HandClipExtractor(clip) if e.name == "hand_clip" else e
                for e in ctx.extractors
            ]
        gc.collect()
        before = rss_mb()
        loaded, after, ms = [], [], []
        for _cycle in range(2):
            run_pass(ctx.extractors, decode_all(data[:2]), {})
            loaded.append(rss_mb())
            for _ in range(2):  # right after loading the models (cold on the second cycle), then warm
                images = decode_all(data[:1])
                t0 = time.perf_counter()
                run_pass(ctx.extractors, images, {})
                ms.append((time.perf_counter() - t0) * 1000)
            unloaded = unload_models(ctx)
            after.append(rss_mb())
        cold = run_pass_ms(ctx.extractors, data[:1])
        unload_models(ctx)
        ctx.store.close()
    print(
        f"{config:12s} idle RSS before the first image {before:.0f} MB; models loaded {loaded[0]:.0f} MB; "
        f"after unloading them ({len(unloaded)} extractors) {after[0]:.0f} MB = {after[0] - before:+.0f} MB; "
        f"loaded again and unloaded {after[1]:.0f} MB = {after[1] - before:+.0f} MB (aim: within 150 MB)"
    )
    print(
        f"{config:12s} reload cost: one image through every extractor right after unloading {cold:.0f} ms, "
        f"warm {ms[-1]:.0f} ms -> loading the models again costs {cold - ms[-1]:.0f} ms once"
    )


def run_pass_ms(extractors: list[Extractor], data: list[tuple[Path, bytes]]) -> float:
    images = decode_all(data)
    t0 = time.perf_counter()
    run_pass(extractors, images, {})
    return (time.perf_counter() - t0) * 1000


def idle_memory_in_fresh_processes(args: argparse.Namespace) -> None:
    """Each configuration in a process of its own, so that neither the other configuration nor the
    figures above (other extractor instances, the per-person runs) are counted in its idle RSS."""
    print("\nidle memory (extractors.unload_idle_seconds), each configuration in a fresh process:")
    for config in ("with CLIP", "without CLIP"):
        cmd = [sys.executable, __file__, "--idle-memory", config, "--device", args.device]
        if args.synthetic:
            cmd += ["--synthetic", str(args.synthetic)]
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"}
        )
        if out.returncode != 0:
            raise SystemExit(f"{config}: exit {out.returncode}\n{out.stderr[-3000:]}")
        print(out.stdout.strip())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", type=int, default=0, help="use N synthetic 1024x1536 images")
    ap.add_argument("--device", default="auto", choices=["auto", "mps", "cuda", "cpu"])
    ap.add_argument("--persons", type=int, default=4, help="images per group for the per-person cost (0: skip)")
    ap.add_argument("--persons-only", action="store_true", help="only the per-person cost")
    ap.add_argument("--memory-only", action="store_true", help="only the idle memory and reload cost")
    ap.add_argument("--idle-memory", choices=["with CLIP", "without CLIP"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tune_malloc()  # as `bestshot run` does
    if args.persons_only:
        persons_cost(max(args.persons, 1))
        return
    if args.idle_memory:
        idle_memory(args.idle_memory, image_bytes(args.synthetic), args.device)
        return
    if args.memory_only:
        idle_memory_in_fresh_processes(args)
        return

    data = image_bytes(args.synthetic)
    source = (
        "synthetic 1024x1536" if args.synthetic or not (REPO.parent / "shared" / "data").is_dir() else "../shared/data"
    )
    with tempfile.TemporaryDirectory(prefix="bestshot-bench-") as tmp:
        cfg = load_config(
            None, root=Path(tmp) / "root", env={}, overrides={"extractors": {"enabled": ALL, "device": args.device}}
        )
        ctx = build_ctx(cfg)
        for e in ctx.extractors:  # the daemon's start-up reconcile asks each (imports its libraries)
            e.availability()
        clip = ClipExtractor(cfg.extractors, cfg.path("models"), random_weights_for_tests=True)
        ctx.extractors = [
            clip if e.name == "clip" else HandClipExtractor(clip) if e.name == "hand_clip" else e
            for e in ctx.extractors
        ]
        import torch

        print(
            f"machine: {platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, torch threads "
            f"{torch.get_num_threads()}, python {platform.python_version()}"
        )
        print(f"{len(data)} images from {source}; images_per_pass {cfg.extractors.images_per_pass}")
        print("clip: real ViT-B-32 architecture with RANDOM weights (no checkpoint here): same compute")

        t0 = time.perf_counter()
        decode_all(data)
        decode_ms = (time.perf_counter() - t0) * 1000 / len(data)

        iso = alone(ctx.extractors, data)
        print(f"\n{'extractor':10s} {'ms/image alone':>14s}")
        for name, ms in iso.items():
            print(f"{name:10s} {ms:14.1f}")
        floor = sum(iso.values())
        print(f"{'sum':10s} {floor:14.1f}  (floor: one image through every extractor, decode excluded)")
        print(f"{'decode':10s} {decode_ms:14.1f}  (paid once per image by ingest, not in the floor)")

        ingest_ms, queue_ms, counts = end_to_end(ctx, data)
        bad = {k: v for k, v in counts.items() if set(v) - {"done"}}
        print(f"\njobs by extractor and state: {counts}" + (f"  NOT ALL DONE: {bad}" if bad else ""))
        print(f"ingest (read, hash, decode, metadata, enqueue; passes run on full hand-offs): {ingest_ms:.1f} ms/image")
        print(f"queue (pipeline rounds until empty): {queue_ms:.1f} ms/image")
        total = ingest_ms + queue_ms
        print(
            f"ingest + queue, all extractors: {total:.1f} ms/image = {1000 / total:.2f} images/s; "
            f"floor {floor:.1f} ms -> ratio {floor / total:.2f}"
        )
        print(f"peak RSS with all models loaded: {peak_rss_mb():.0f} MB")
        if args.persons:
            persons_cost(args.persons)
        for e in ctx.extractors:
            e.close()
        ctx.store.close()
    idle_memory_in_fresh_processes(args)


if __name__ == "__main__":
    main()
