"""`bestshot export parquet`: rewrite sidecar/embeddings.parquet and hashes.parquet from the DB."""

from __future__ import annotations

import argparse

from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("export", help="rewrite the parquet sidecar exports from the database")
    p.add_argument("what", choices=["parquet"], help="parquet: rewrite sidecar/embeddings.parquet and hashes.parquet")
    add_common(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from daemon.app import build_ctx
    from daemon.store.parquet_export import export_parquet

    cfg = config_from_args(args)
    counts = export_parquet(build_ctx(cfg, with_extractors=False))
    print(
        f"wrote {cfg.path('sidecar')}/embeddings.parquet ({counts['embeddings']} rows) "
        f"and hashes.parquet ({counts['hashes']} rows)"
    )
    return 0
