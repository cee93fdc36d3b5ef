"""An extractor that returns None for an image (a third-party-style extractor breaking the
`run` contract; run_pass passes the None on) fails that job and says why where the user looks:
an open error in `bestshot status`, not only a failed count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from core.config import load_config
from core.extractors.base import Extractor, Outcome, SidecarResult
from core.imaging import DecodedImage
from daemon.app import build_ctx
from tests.helpers import db_rows, ingest, status, textured, write_png


class GivesNothing(Extractor):
    name = "gives_nothing"
    version = 1

    def run(self, images: Sequence[DecodedImage], deps: Sequence[Mapping[str, SidecarResult]]) -> list[Outcome]:
        return [None] * len(images)  # type: ignore[list-item]  # the broken contract under test


def test_an_extractor_without_an_outcome_is_an_open_error_in_status(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_png(root / "inbox" / "s" / "img_0.png", textured(7))
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}}))
    ctx.extractors.append(GivesNothing())
    ingest(ctx)

    [(sha, path)] = db_rows(root, "SELECT sha256, path FROM images")
    jobs = dict(db_rows(root, "SELECT kind, state FROM jobs"))
    assert jobs == {"phash": "done", "gives_nothing": "failed"}
    st = status(root)
    errs = [e for e in st["errors"] if e["stage"] == "extract:gives_nothing"]
    assert len(errs) == 1 and errs[0]["path"] == path, st["errors"]
    assert "internal error" in errs[0]["reason"] and "gives_nothing" in errs[0]["reason"]
    assert st["open_errors"] >= 1
    # The other extractor's result is kept.
    assert db_rows(root, f"SELECT extractor FROM sidecars WHERE sha256 = '{sha}'") == [("phash",)]
