"""The root is resolved once to the spelling FSEvents reports (real path, on-disk case), so live
events under a symlinked or differently spelled root are not dropped until the reconcile.

Linux's inotify reports the spelling that was watched, so the engine-level tests feed events
spelled as FSEvents spells them (the real path) to a real Engine over real files; the daemon
test runs the real daemon on a symlinked root. A case-insensitive volume cannot be mounted
here: the on-disk-case lookup is tested on its own (`entry_named`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from core.canonical import canonical_path, entry_named
from core.config import load_config
from core.events import FileChanged
from core.layout import locate
from daemon.app import build_ctx
from daemon.store.schema import images
from daemon.watch.engine import Engine
from tests.helpers import DaemonProc, filed_sets, status, textured, wait_for, write_config, write_png


def _real_and_link(tmp_path: Path) -> tuple[Path, Path]:
    real = tmp_path / "private" / "lib"
    real.mkdir(parents=True)
    link = tmp_path / "lib_link"
    link.symlink_to(real)
    return real, link


@pytest.mark.parametrize("spelling", ["symlink", "dotdot"])
def test_event_spelled_as_fsevents_spells_it_is_ingested(tmp_path: Path, spelling: str) -> None:
    real, link = _real_and_link(tmp_path)
    (tmp_path / "other").mkdir()
    typed = link if spelling == "symlink" else tmp_path / "other" / ".." / "private" / "lib"
    cfg = load_config(root=typed, env={}, overrides={"extractors": {"enabled": ["phash"]}})
    assert cfg.root == real.resolve()
    ctx = build_ctx(cfg)
    engine = Engine(ctx)  # no settler: a ready file is ingested at once
    img = write_png(real / "inbox" / "a.png", textured(1))
    engine.handle(FileChanged(img))  # FSEvents: the real path, not the typed one
    with ctx.store.read() as conn:
        assert [r.path for r in conn.execute(select(images.c.path))] == ["inbox/a.png"]
    ctx.store.close()


def test_absolute_area_paths_are_resolved_too(tmp_path: Path) -> None:
    real, link = _real_and_link(tmp_path)
    cfg = load_config(root=link, env={}, overrides={"paths": {"approved": str(link / "final")}})
    assert cfg.path("approved") == real.resolve() / "final"
    assert locate(cfg, real.resolve() / "final" / "x.png").area == "approved"


def test_on_disk_spelling_lookup() -> None:
    assert entry_named("BestShot", ["bestshot", "other"]) == "bestshot"
    assert entry_named("Cafe\u0301", ["Caf\u00e9"]) == "Caf\u00e9"  # NFD typed, NFC on disk (and back)
    assert entry_named("x", ["x", "X"]) == "x"
    assert entry_named("y", ["x", "X"]) is None
    assert entry_named("a", ["A", "a"]) == "a"
    assert entry_named("b", ["B", "\u0042"]) is None  # ambiguous: keep the typed spelling


def test_missing_tail_is_kept_as_typed(tmp_path: Path) -> None:
    real, link = _real_and_link(tmp_path)
    assert canonical_path(link / "not" / "yet") == real.resolve() / "not" / "yet"
    assert canonical_path(Path(os.path.relpath(real))) == real.resolve()


@pytest.mark.slow
def test_daemon_on_symlinked_root_files_sets_live(tmp_path: Path) -> None:
    real, link = _real_and_link(tmp_path)
    write_config(real)  # reconcile every 60 minutes: only live events can file the set
    with DaemonProc(link):
        staging = tmp_path / "staging" / "s"
        for i in range(2):
            write_png(staging / f"s_{i}.png", textured(10 + i))
        shutil.move(str(staging), real / "inbox" / "s")
        wait_for(lambda: ["s_0.png", "s_1.png"] in filed_sets(real).values(), timeout=30, what="set filed live")
        assert status(link)["root"] == str(real.resolve())
        assert status(real)["sets"] == 1
