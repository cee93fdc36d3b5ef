"""The real daemon (subprocess) over a temp root with real file events."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import (
    DaemonProc,
    db_rows,
    filed_sets,
    status,
    textured,
    wait_for,
    write_config,
    write_png,
)

pytestmark = pytest.mark.slow


def _prompted(dirpath: Path, name: str, seed: int, prompt: str) -> Path:
    p = write_png(dirpath / name, textured(seed))
    (dirpath / (Path(name).stem + ".yaml")).write_text(f"prompt: {prompt}\nseed: {seed}\n")
    return p


def test_folder_drop_and_loose_files_become_sets(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    with DaemonProc(root):
        # A folder prepared elsewhere and moved in, as Finder does.
        staging = tmp_path / "staging" / "beach shoot"
        for i in range(3):
            write_png(staging / f"b{i}.png", textured(100 + i))
        (staging / "meta.yaml").write_text("prompt: beach\n")
        shutil.move(str(staging), root / "inbox" / "beach shoot")
        # Loose files: four share a prompt (closes at 4), two share another (closes when quiet).
        for i in range(4):
            _prompted(root / "inbox", f"a{i}.png", i, "a woman in a red coat")
        for i in range(2):
            _prompted(root / "inbox", f"m{i}.png", 10 + i, "a man with a hat")
        # A set folder appears with its first move: wait for every image to be in one.
        wait_for(
            lambda: len(filed_sets(root)) == 3 and sum(map(len, filed_sets(root).values())) == 9,
            timeout=40,
            what="three sets filed",
        )
        sets = filed_sets(root)
        assert sorted(sets.values()) == [
            ["a0.png", "a1.png", "a2.png", "a3.png"],
            ["b0.png", "b1.png", "b2.png"],
            ["m0.png", "m1.png"],
        ]
        a_set = next(k for k, v in sets.items() if "a0.png" in v)
        assert (root / "raw" / a_set / "a0.yaml").read_text().startswith("prompt: a woman")
        b_set = next(k for k, v in sets.items() if "b0.png" in v)
        assert (root / "raw" / b_set / "meta.yaml").exists()
        assert not (root / "inbox" / "beach shoot").exists()
        reasons = dict(db_rows(root, "select folder, reason from sets"))
        assert "dropped folder 'beach shoot'" in reasons[f"raw/{b_set}"]
        assert "same prompt" in reasons[f"raw/{a_set}"] and "full (4 images)" in reasons[f"raw/{a_set}"]
        st = status(root)
        assert st["images"] == 9 and st["sets"] == 3 and st["errors"] == []
        # Every move was journaled before it happened and completed.
        assert db_rows(root, "select distinct state from journal") == [("done",)]


def test_same_image_twice_is_recognised(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root, {"grouping": {"quiet_seconds": 0.5}})
    with DaemonProc(root):
        write_png(root / "inbox" / "x.png", textured(5))
        # A set folder appears with its first move: wait for the image itself in it.
        wait_for(lambda: any("x.png" in names for names in filed_sets(root).values()), timeout=20, what="x.png filed")
        shutil.copy(next((root / "raw").glob("*/x.png")), root / "inbox" / "x copy.png")
        wait_for(lambda: status(root)["errors"], timeout=20, what="duplicate reported")
        err = status(root)["errors"][0]
        assert err["kind"] == "duplicate" and err["path"] == "inbox/x copy.png"
        assert (root / "inbox" / "x copy.png").exists()
        assert status(root)["images"] == 1


def test_bad_inputs_are_reported_and_left_in_place(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root, {"ingest": {"max_pixels": 1_000_000}, "grouping": {"quiet_seconds": 0.5}})
    inbox = root / "inbox"
    with DaemonProc(root) as d:
        good = write_png(tmp_path / "g.png", textured(1))
        data = good.read_bytes()
        (inbox / "zero.png").write_bytes(b"")
        (inbox / "truncated.png").write_bytes(data[: len(data) // 2])
        (inbox / "fake.png").write_text("this is not an image\n")
        write_png(inbox / "huge.png", textured(2, w=1200, h=1000))
        write_png(inbox / "badyaml.png", textured(3))
        (inbox / "badyaml.yaml").write_text("prompt: [unclosed\n")
        os.mkfifo(inbox / "fifo.png")
        os.symlink(good, inbox / "link.png")
        (inbox / "loop").mkdir()
        os.symlink(inbox, inbox / "loop" / "back")  # a symlink loop must not be followed
        long_name = "L" * 200 + ".png"
        write_png(inbox / long_name, textured(4))
        write_png(inbox / "ünïcødé 画像.png", textured(6))
        raw_name = b"latin1-\xe9t\xe9.png"
        with open(os.path.join(os.fsencode(inbox), raw_name), "wb") as f:
            f.write(write_png(tmp_path / "l1.png", textured(7)).read_bytes())
        vanishing = write_png(inbox / "vanish.png", textured(8))
        vanishing.unlink()
        # A slow writer: 4 chunks over ~3 s must be waited for, not reported.
        slow = inbox / "slow.png"
        payload = write_png(tmp_path / "s.png", textured(9, w=400, h=300)).read_bytes()
        with slow.open("wb") as f:
            for i in range(4):
                f.write(payload[i * len(payload) // 4 : (i + 1) * len(payload) // 4])
                f.flush()
                time.sleep(0.8)

        expect = {
            "inbox/zero.png",
            "inbox/truncated.png",
            "inbox/fake.png",
            "inbox/huge.png",
            "inbox/badyaml.png",
            "inbox/fifo.png",
            "inbox/link.png",
        }

        def reported() -> bool:
            return expect <= {e["path"] for e in status(root)["errors"]}

        wait_for(reported, timeout=40, what="all bad inputs reported")
        errs = {e["path"]: e for e in status(root)["errors"]}
        assert "empty" in errs["inbox/zero.png"]["reason"]
        assert "IEND" in errs["inbox/truncated.png"]["reason"]
        assert "not a PNG" in errs["inbox/fake.png"]["reason"]
        assert "max_pixels" in errs["inbox/huge.png"]["reason"]
        assert "invalid YAML" in errs["inbox/badyaml.png"]["reason"]
        assert "regular file" in errs["inbox/fifo.png"]["reason"]
        assert "symbolic link" in errs["inbox/link.png"]["reason"]
        for p in expect:
            assert os.path.lexists(root / p), f"{p} must be left in place"
        # The good files, including odd names and the slow one, were filed as sets.
        wait_for(lambda: sum(len(v) for v in filed_sets(root).values()) == 4, timeout=30, what="good files filed")
        names = {n for v in filed_sets(root).values() for n in v}
        assert {long_name, "ünïcødé 画像.png", "slow.png"} <= names
        assert raw_name in {os.fsencode(p.name) for p in (root / "raw").rglob("*.png")}
        assert "vanish.png" not in str(status(root)["errors"])
        # Fixing the YAML lets the image through.
        (inbox / "badyaml.yaml").write_text("prompt: fixed\n")
        wait_for(
            lambda: "badyaml.png" in {n for v in filed_sets(root).values() for n in v},
            timeout=20,
            what="fixed YAML filed",
        )
        assert d.proc is not None and d.proc.poll() is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    with DaemonProc(root):
        p = write_png(root / "inbox" / "locked.png", textured(1))
        p.chmod(0)
        wait_for(lambda: status(root)["errors"], timeout=20, what="error")
        assert "permission" in status(root)["errors"][0]["reason"]


def test_sigterm_exits_zero_promptly(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    d = DaemonProc(root).start()
    # An idle worker waits on its queue with no timeout: only the wake-up the signal handler puts
    # there ends the wait, so a lost wake-up is a stop that times out (a bound, not a stopwatch).
    assert d.stop(signal.SIGTERM, timeout=10) == 0


def _snapshot(root: Path) -> dict[str, object]:
    return {
        "images": sorted(db_rows(root, "select sha256, path, state from images")),
        "sets": sorted(db_rows(root, "select id, folder, source, size, status from sets")),
        "members": sorted(db_rows(root, "select set_id, sha256, position from set_members")),
        "files": sorted(db_rows(root, "select path, sha256 from files")),
        "disk": filed_sets(root),
        "inbox": sorted(p.name for p in (root / "inbox").iterdir()),
    }


def _populate(inbox: Path) -> None:
    for s in range(8):
        for i in range(4):
            _prompted(inbox, f"p{s}_{i}.png", s * 10 + i, f"prompt number {s}")
    for s in range(3):
        for i in range(3):
            write_png(inbox / f"folder{s}" / f"f{i}.png", textured(500 + s * 10 + i))


def test_kill9_mid_ingest_then_restart_matches_uninterrupted(tmp_path: Path) -> None:
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    for r in (ref, crash):
        write_config(r)
        _populate(r / "inbox")
    with DaemonProc(ref):
        wait_for(lambda: len(filed_sets(ref)) == 11, timeout=60, what="reference run filed all sets")
    # Kill -9 several times at different points of ingest and filing, then let it finish.
    killed_at = []
    for at_least in (1, 4, 8):
        d = DaemonProc(crash).start()
        wait_for(
            lambda n=at_least: len(filed_sets(crash)) >= n, timeout=60, interval=0.005, what=f"{at_least} sets filed"
        )
        d.kill9()
        killed_at.append(len(filed_sets(crash)))
    with DaemonProc(crash):
        wait_for(
            lambda: len(filed_sets(crash)) == 11 and not db_rows(crash, "select 1 from sets where status='filing'"),
            timeout=60,
            what="restart finished filing",
        )
    print("sets filed when killed:", killed_at)
    assert _snapshot(crash) == _snapshot(ref), f"killed after {killed_at} sets"
    # Every journaled move finished or was resolved; none is left half-done.
    assert not db_rows(crash, "select id from journal where state = 'planned'")
