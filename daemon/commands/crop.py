"""`bestshot crop --img IMG [--aspect from_original] [--out FILE] [--root DIR]`.

Flags anomalies and proposes an exact-aspect crop for one image. Sidecars already stored under
the root are reused; the missing ones are computed here with the extractors. Writes the crop
JSON (default `<stem>.crop.json` next to the image), a preview JPEG beside it for Finder, and,
with a root, `sidecar/anomalies/<sha256>.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import BestshotError
from daemon import logsetup
from daemon.cli import add_common, config_from_args

if TYPE_CHECKING:
    from core.anomaly.detect import HandSuspicion
    from core.anomaly.scorer import RegionScorer
    from core.config import Config
    from core.extractors.base import Outcome

log = logging.getLogger(__name__)


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("crop", help="flag anomalies and propose an exact-aspect crop for one image")
    p.add_argument("--img", type=Path, required=True, help="the image")
    p.add_argument(
        "--aspect",
        choices=["from_original"],
        default="from_original",
        help="crop aspect ratio: the original's, exactly (the only mode)",
    )
    p.add_argument("--out", type=Path, help="crop JSON path (default: <image stem>.crop.json next to the image)")
    add_common(p)
    p.set_defaults(handler=handle)


def preview_path(out: Path) -> Path:
    """`x.crop.json` -> `x.crop.jpg`, so Finder lists the two side by side."""
    name = out.name[: -len(".json")] if out.name.endswith(".json") else out.name
    return out.with_name(name + ".jpg")


def _stored_results(cfg: Config, sha: str) -> tuple[dict[str, Outcome], RegionScorer | None, HandSuspicion | None]:
    """Sidecars the daemon already stored for this image, the user's calibration of the cues and
    the learned hand model's reading of its hands; nothing when the root has no database."""
    from core.anomaly.calibration import CalibratedScorer
    from core.crop.from_sidecars import NEEDED
    from core.extractors.analysis import hand_suspicion

    if cfg.paths.db_url is None and not (cfg.root / "bestshot.sqlite").is_file():
        return {}, None, None
    from daemon.anomaly.hand_model import hand_model_in_force
    from daemon.extractors.sidecar_store import stored_result
    from daemon.store.db import open_store
    from daemon.store.learned_state import calibration_in_force

    out: dict[str, Outcome] = {}
    store = open_store(cfg.db_url)
    try:
        with store.read() as conn:
            cal = calibration_in_force(cfg, conn)
            suspicion = hand_suspicion(
                hand_model_in_force(cfg, conn),
                stored_result(cfg, conn, sha, "hand_clip"),
                stored_result(cfg, conn, sha, "regions"),
            )
            for name in NEEDED:
                got = stored_result(cfg, conn, sha, name)
                if got is not None:  # else computed below (a saliency without its mask included)
                    out[name] = got
    finally:
        store.close()
    return out, CalibratedScorer(cal) if cal is not None else None, suspicion


def handle(args: argparse.Namespace) -> int:
    from core.anomaly.parts import shipped_parts_model
    from core.atomicfile import atomic_write
    from core.crop.from_sidecars import NEEDED, anomaly_report, crop_for, inputs_from_results
    from core.crop.preview import render_preview
    from core.extractors.registry import build_extractors, run_pass
    from core.imaging import load

    cfg = config_from_args(args)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    img = load(args.img, max_pixels=cfg.ingest.max_pixels, accept_formats=tuple(cfg.ingest.accept_formats))
    results, scorer, suspicion = _stored_results(cfg, img.sha256) if args.root is not None else ({}, None, None)
    todo = [n for n in NEEDED if n not in results]
    computed: dict[str, Outcome] = {}
    if todo:
        extractors = build_extractors(cfg.extractors.model_copy(update={"enabled": todo}), cfg.path("models"))
        try:
            computed = run_pass(extractors, [img], {})[img.sha256]
        finally:
            for e in extractors:
                e.close()
    results.update(computed)
    for name, got in results.items():
        if isinstance(got, BestshotError):
            fix = getattr(got, "fix", "")
            print(f"warning: {name}: {got.reason}" + (f" (fix: {fix})" if fix else ""), file=sys.stderr)

    inputs = inputs_from_results(results)
    if suspicion is not None and len(suspicion.probabilities) != len(inputs.hands):
        suspicion = None  # the hands were detected again here and may differ from the stored ones
    report = anomaly_report(
        inputs, img.width, img.height, cfg.anomaly, img.rgb, scorer, suspicion, parts_model=shipped_parts_model()
    )
    proposal = crop_for(inputs, report, img.width, img.height, cfg.crop)

    out = args.out or img.path.with_name(img.path.stem + ".crop.json")
    doc = {"image": str(img.path), "sha256": img.sha256, **proposal.to_dict(), "anomalies": report.to_dict()}
    atomic_write(out, (json.dumps(doc, indent=1) + "\n").encode())
    prev = preview_path(out)
    atomic_write(
        prev,
        render_preview(img.rgb, proposal, report, max_side=cfg.crop.preview_max_side, quality=cfg.crop.preview_quality),
    )
    if args.root is not None:
        atomic_write(cfg.path("sidecar") / "anomalies" / f"{img.sha256}.json", report.to_json().encode())

    b = proposal.best
    a, r = proposal.aspect["ratio"]
    exactness = "exact" if b.aspect_error == 0 else f"near-exact, error {b.aspect_error:.3g}"
    print(f"{img.path.name}: {proposal.verdict} - {proposal.reason}")
    print(f"  aspect {a}:{r} ({exactness}); crop x={b.x} y={b.y} w={b.w} h={b.h} of {img.width}x{img.height}")
    for an in report.anomalies:
        ev = an.evidence
        print(
            f"  anomaly {an.tag} ({an.source}) score {an.score:.2f}: "
            f"{ev['measurement']} {ev['value']} vs {ev['threshold']}"
        )
    if report.uncertain:
        print("  uncertain (hands that could not be checked):")
        for line in report.reasons:
            if not any(line.startswith(f"{an.source}: {an.tag}") for an in report.anomalies):
                print(f"    - {line}")
    print(f"  wrote {out} and {prev}")
    return 0
