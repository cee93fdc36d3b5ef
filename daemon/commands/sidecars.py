"""`bestshot embed | phash | detect PATH...`: compute sidecars for images or folders by hand."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import BestshotError
from daemon import logsetup
from daemon.cli import add_common, config_from_args

if TYPE_CHECKING:
    from core.extractors.base import Extractor, SidecarResult
    from core.imaging import DecodedImage
    from daemon.context import Ctx

log = logging.getLogger(__name__)

GROUPS = {
    "embed": ["clip", "hands", "hand_clip"],  # hand crops need the hands to crop
    "phash": ["phash"],
    "detect": ["hands", "pose", "face", "saliency", "quality", "anomalies", "crop"],
}


def register(subs: argparse._SubParsersAction) -> None:
    for cmd, names in GROUPS.items():
        p = subs.add_parser(cmd, help=f"compute {', '.join(names)} sidecars for images or folders")
        p.add_argument("paths", nargs="+", type=Path, help="image files or folders (searched recursively)")
        add_common(p)
        p.add_argument("--batch", type=int, default=16, help="images decoded per pass")
        p.set_defaults(handler=handle, extractor_names=names)


def expand(paths: list[Path]) -> list[Path]:
    from core.layout import is_image_name

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(Path(dp) / n for dp, _dn, fn in os.walk(p) for n in fn if is_image_name(n))
        else:
            out.append(p)
    return out


def compute(ctx: Ctx, names: list[str], files: list[Path], batch: int) -> tuple[int, int]:
    """Run the named extractors over files; returns (ok, failed) image counts."""
    from tqdm import tqdm

    from core.extractors.registry import build_extractors, run_pass
    from core.imaging import load
    from daemon.extractors.sidecar_store import save_results
    from daemon.store import records

    settings = ctx.cfg.extractors.model_copy(update={"enabled": names})
    wanted = build_extractors(settings, ctx.cfg.path("models"), ctx.cfg.anomaly, ctx.cfg.crop)
    for ext in wanted:
        a = ext.availability()
        if not a.available:
            raise BestshotError(None, f"extractor {ext.name} is unavailable: {a.reason}. Fix: {a.fix}")
    ok = failed = 0
    with tqdm(total=len(files), unit="img", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, len(files), batch):
            decoded: list[DecodedImage] = []
            for f in files[start : start + batch]:
                try:
                    decoded.append(
                        load(
                            f, max_pixels=ctx.cfg.ingest.max_pixels, accept_formats=tuple(ctx.cfg.ingest.accept_formats)
                        )
                    )
                except BestshotError as e:
                    failed += 1
                    print(f"{f}: {e.reason}", file=sys.stderr)
            outcomes = run_pass(wanted, decoded, {})
            for img in decoded:
                bad = False
                with ctx.store.write() as conn:
                    results: list[tuple[Extractor, SidecarResult]] = []
                    for ext in wanted:
                        out = outcomes[img.sha256].get(ext.name)
                        if isinstance(out, BestshotError):
                            bad = True
                            print(f"{img.path}: {ext.name}: {out.reason}", file=sys.stderr)
                            records.record_error(conn, str(img.path), f"extract:{ext.name}", out, img.sha256)
                        elif out is not None:
                            results.append((ext, out))
                    save_results(ctx, conn, img.sha256, results)
                failed += bad
                ok += not bad
            bar.update(len(files[start : start + batch]))
    for ext in wanted:
        ext.close()
    return ok, failed


def handle(args: argparse.Namespace) -> int:
    from daemon.app import build_ctx
    from daemon.store.parquet_export import export_parquet

    cfg = config_from_args(args)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    ctx = build_ctx(cfg, with_extractors=False)
    files = expand(args.paths)
    ok, failed = compute(ctx, args.extractor_names, files, args.batch)
    counts = export_parquet(ctx)
    print(
        f"{args.command}: {ok} images done, {failed} failed; sidecars under {cfg.path('sidecar')} "
        f"({counts['embeddings']} embeddings, {counts['hashes']} hashes in parquet)"
    )
    return 0 if failed == 0 else 1
