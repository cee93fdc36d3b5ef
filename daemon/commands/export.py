"""`bestshot export parquet`: rewrite sidecar/embeddings.parquet and hashes.parquet from the DB."""

from __future__ import annotations

import argparse

from daemon.app import build_ctx
from daemon.cli import add_common, config_from_args
from daemon.parquet_export import export_parquet


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("export", help="export sidecars (parquet)")
    p.add_argument("what", choices=["parquet"])
    add_common(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    counts = export_parquet(build_ctx(cfg, with_extractors=False))
    print(
        f"wrote {cfg.path('sidecar')}/embeddings.parquet ({counts['embeddings']} rows) "
        f"and hashes.parquet ({counts['hashes']} rows)"
    )
    return 0
