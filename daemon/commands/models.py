"""`bestshot models list | fetch`: which model files are here, and fetching CLIP weights."""

from __future__ import annotations

import argparse

from daemon import logsetup
from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("models", help="list model files, or fetch the CLIP weights (needs a network)")
    p.add_argument(
        "action",
        choices=["list", "fetch"],
        help="list: which model files are present or missing; fetch: download the OpenCLIP weights",
    )
    add_common(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from core.extractors.weights import fetch_clip_weights, list_models

    cfg = config_from_args(args)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    models_dir = cfg.path("models")
    if args.action == "fetch":
        path = fetch_clip_weights(cfg.extractors, models_dir)
        print(f"fetched {cfg.extractors.clip.model}/{cfg.extractors.clip.pretrained} to {path}")
        return 0
    missing = 0
    for m in list_models(cfg.extractors, models_dir):
        size = f"{m.size_bytes / 1e6:7.1f} MB" if m.present else "   missing"
        print(f"{m.name:<22} {size}  {m.used_by:<9} {m.configured}  {m.path or ''}  {m.note}".rstrip())
        missing += not m.present
    return 0 if missing == 0 else 1
