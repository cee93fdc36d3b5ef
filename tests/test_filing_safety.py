"""Filing puts each image where it belongs under its own identity (issue 14, defects 5 and 7)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sqlalchemy import select

from core.config import load_config
from daemon.app import build_ctx
from daemon.context import Ctx
from daemon.store.schema import images, set_members
from daemon.watch.engine import Engine
from tests.helpers import bestshot, db_rows, filed_sets, status, textured, write_config, write_png


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def ctx_for(root: Path) -> Ctx:
    write_config(root)
    return build_ctx(load_config(root / "bestshot.yaml", root=root, env={}))


def assert_every_present_image_is_what_its_file_holds(ctx: Ctx) -> None:
    with ctx.store.read() as conn:
        rows = conn.execute(select(images.c.sha256, images.c.path).where(images.c.state == "present")).all()
    assert rows
    for r in rows:
        assert sha(ctx.abs(r.path)) == r.sha256, f"{r.path} holds other content than image {r.sha256[:12]}"


def test_a_file_replaced_after_registration_is_not_filed_under_the_old_sha256(tmp_path: Path) -> None:
    """Defect 5: inbox/x.png registered with content A, then os.replace'd with content B before its
    set closed, was filed as raw/set_…/x.png holding B while the database said A."""
    root = tmp_path / "root"
    ctx = ctx_for(root)
    engine = Engine(ctx)
    x = write_png(root / "inbox" / "x.png", textured(1))
    engine.reconcile(direct=True)  # registers A
    a = sha(x)
    with ctx.store.read() as conn:
        assert conn.execute(select(images.c.path).where(images.c.sha256 == a)).scalar() == "inbox/x.png"
    tmp = write_png(root / "inbox" / ".x.png.tmp", textured(2))
    os.replace(tmp, x)  # B takes the name; its event has not been handled yet
    b = sha(x)
    engine.file_ready_sets(force_close=True)  # A's set closes and is filed now

    assert_every_present_image_is_what_its_file_holds(ctx)
    with ctx.store.read() as conn:
        states = dict(conn.execute(select(images.c.sha256, images.c.state)).all())
        members = {r.sha256 for r in conn.execute(select(set_members.c.sha256))}
    assert states[a] == "missing" and a not in members  # A's bytes left the tree: not a member of anything
    assert states[b] == "present"  # B is registered as what it is
    engine.file_ready_sets(force_close=True)  # and filed under its own identity
    assert_every_present_image_is_what_its_file_holds(ctx)
    with ctx.store.read() as conn:
        assert conn.execute(select(images.c.path).where(images.c.sha256 == b)).scalar().startswith("raw/set_")


@pytest.mark.slow
def test_a_file_replaced_after_registration_with_the_daemon(tmp_path: Path) -> None:
    """Defect 5, end to end: the running daemon sees the replacement and files B as B."""
    from tests.helpers import DaemonProc, wait_for

    root = tmp_path / "root"
    write_config(root, {"grouping": {"quiet_seconds": 4.0}})
    with DaemonProc(root):
        x = write_png(tmp_path / "stage" / "x.png", textured(1))
        os.replace(x, root / "inbox" / "x.png")
        wait_for(lambda: db_rows(root, "select 1 from images where path = 'inbox/x.png'"), what="A registered")
        tmp = write_png(root / "inbox" / ".x.png.tmp", textured(2))
        b = sha(tmp)
        os.replace(tmp, root / "inbox" / "x.png")
        wait_for(lambda: filed_sets(root), timeout=30, what="a set filed")
        wait_for(lambda: not (root / "inbox" / "x.png").exists(), timeout=30, what="x.png filed")
    for sha256, path in db_rows(root, "select sha256, path from images where state = 'present'"):
        assert sha(root / path) == sha256
    assert db_rows(root, f"select state from images where sha256 = '{b}'") == [("present",)]


def test_names_of_248_to_255_bytes_are_valid_input(tmp_path: Path) -> None:
    """Defect 7: probing for name + ".caption" (and similar) went over the file-name limit and the
    image failed with `I/O error: File name too long`."""
    root = tmp_path / "root"
    write_config(root)
    names = [("n" * (n - 4)) + ".png" for n in (248, 251, 255)]
    for i, name in enumerate(names):
        write_png(root / "inbox" / "long" / name, textured(30 + i))
    (root / "inbox" / "long" / ("n" * 244 + ".yaml")).write_text("prompt: a long name\n")
    bestshot("scan", root=root)
    info = status(root)
    assert info["open_errors"] == 0, info["errors"]
    assert sorted(n for v in filed_sets(root).values() for n in v) == sorted(names)
    assert db_rows(root, "select prompt from image_metadata where prompt is not null") == [("a long name",)]
