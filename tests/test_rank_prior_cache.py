"""The prior's library-wide standardisation is reused between ranking rounds and refitted once the
library has changed by more than `PRIOR_REFIT_CHANGE` (daemon.rank.ranking)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from core.config import load_config
from core.rank.features import FeatureSpace
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.dedup import refresh_duplicates
from daemon.rank.ranking import (
    PRIOR_REFIT_CHANGE,
    current_model,
    fit_prior,
    library,
    members_of,
    prior_sample,
    signals_for,
)
from daemon.store.schema import sets
from tests.helpers import ingest, textured, write_png


def _ingest(ctx: Ctx, folder: Path, seeds: range) -> None:
    for s in seeds:
        write_png(folder / f"img_{s:02}.png", textured(500 + s, w=64, h=96))
    ingest(ctx)


def test_prior_is_reused_until_the_library_changes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    _ingest(ctx, root / "inbox" / "a", range(0, 4))
    _ingest(ctx, root / "inbox" / "b", range(4, 8))
    _ingest(ctx, root / "inbox" / "c", range(8, 10))
    with ctx.store.read() as conn:
        first = current_model(ctx, conn)
        assert current_model(ctx, conn) is first
    assert ctx.prior_fit is not None and ctx.prior_fit.images == 10

    assert PRIOR_REFIT_CHANGE * 10 >= 1  # one more image is within the tolerance ...
    _ingest(ctx, root / "inbox" / "d", range(10, 11))
    with ctx.store.read() as conn:
        assert current_model(ctx, conn) is first

    _ingest(ctx, root / "inbox" / "e", range(11, 13))  # ... three more are not
    with ctx.store.read() as conn:
        refitted = current_model(ctx, conn)
    assert refitted is not first
    assert ctx.prior_fit.images == 13
    assert refitted.space.to_dict() != first.space.to_dict()  # standardised over the grown library


def test_signals_read_only_the_requested_images_with_their_duplicate_marks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    ctx = build_ctx(
        load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    )
    base = textured(900, w=96, h=128)
    write_png(root / "inbox" / "s" / "a.png", base)
    write_png(root / "inbox" / "s" / "b.png", textured(901, w=96, h=128, base=base, noise=2.0))  # near-duplicate of a
    write_png(root / "inbox" / "s" / "c.png", textured(902, w=96, h=128))
    _ingest(ctx, root / "inbox" / "t", range(20, 22))
    refresh_duplicates(ctx)
    with ctx.store.read() as conn:
        mem = members_of(conn, next(r.id for r in conn.execute(select(sets.c.id)) if len(members_of(conn, r.id)) == 3))
        sig = signals_for(conn, [sha for sha, _n, _p in mem])
    assert len(sig) == 3  # nothing of the other set
    flags = {name: sig[sha].near_duplicate for sha, name, _p in mem}
    assert flags == {"a.png": False, "b.png": True, "c.png": False}, flags
    assert all(s.quality is not None and s.embedding is None for s in sig.values())


def test_the_fit_is_kept_in_the_database_and_equals_a_full_refit(tmp_path: Path) -> None:
    """A restart reuses the kept fit (same version) while the library stays within the tolerance;
    past it, the fit kept is the full recomputation over the library as it is."""
    root = tmp_path / "root"
    cfg = load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash", "saliency", "quality"]}})
    ctx = build_ctx(cfg)
    _ingest(ctx, root / "inbox" / "a", range(30, 40))
    with ctx.store.read() as conn:
        first = current_model(ctx, conn)
    _ingest(ctx, root / "inbox" / "b", range(40, 41))  # within the tolerance

    ctx.store.close()
    restarted = build_ctx(cfg)
    with restarted.store.read() as conn:
        kept = current_model(restarted, conn)
        full = fit_prior(build_ctx(cfg), conn)  # what reading every image's sidecars gives now
    assert kept.version == first.version
    assert kept.space.to_dict() == first.space.to_dict()
    assert full.space.to_dict() != first.space.to_dict()  # so `kept` was not fitted again

    _ingest(restarted, root / "inbox" / "c", range(41, 44))  # past the tolerance: fitted again
    with restarted.store.read() as conn:
        # The reference fit first: fit_prior stores what it fits, and the last stored fit is the one
        # a restart reads (its version carries its fitting time, to the second).
        full = fit_prior(build_ctx(cfg), conn)
        refitted = current_model(restarted, conn)
    assert refitted.version != first.version
    assert refitted.space.to_dict() == full.space.to_dict()
    restarted.store.close()
    again = build_ctx(cfg)
    with again.store.read() as conn:
        assert current_model(again, conn).version == refitted.version


def test_past_prior_fit_images_the_prior_is_standardised_over_a_fixed_sample(tmp_path: Path) -> None:
    """`rank.prior_fit_images` bounds what a fit reads: past it, the images with the smallest
    sha256; at or under it, every present image, exactly as the unbounded fit."""
    root = tmp_path / "root"
    enabled = {"extractors": {"enabled": ["phash", "saliency", "quality"]}}
    ctx = build_ctx(load_config(root=root, env={}, overrides={**enabled, "rank": {"prior_fit_images": 6}}))
    _ingest(ctx, root / "inbox" / "a", range(50, 60))
    rank = ctx.cfg.rank
    with ctx.store.read() as conn:
        lib = library(conn)
        smallest = sorted(lib)[:6]
        assert sorted(prior_sample(conn, 6)) == smallest
        bounded = fit_prior(ctx, conn)
        whole = FeatureSpace.fit(list(lib.values()), rank.pca_components, rank.pca_min_images)
        sample = FeatureSpace.fit([lib[s] for s in smallest], rank.pca_components, rank.pca_min_images)
        assert len(lib) == 10
        assert bounded.space.to_dict() == sample.to_dict()
        assert bounded.space.to_dict() != whole.to_dict()
        assert ctx.prior_fit is not None and ctx.prior_fit.images == 10  # the refit rule counts the library

        for limit in (10, 5000):  # the library fits in the bound: nothing changes
            unbounded = build_ctx(
                load_config(root=root, env={}, overrides={**enabled, "rank": {"prior_fit_images": limit}})
            )
            assert prior_sample(conn, limit) == list(lib)
            assert fit_prior(unbounded, conn).space.to_dict() == whole.to_dict()
