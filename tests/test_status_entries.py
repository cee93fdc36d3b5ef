"""`status` lists what is wrong now, and only that (issue 14, defect 8)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import (
    DaemonProc,
    bestshot,
    db_rows,
    filed_sets,
    status,
    textured,
    wait_for,
    write_config,
    write_png,
)


def open_error_paths(root: Path) -> dict[str, str]:
    return {e["path"]: e["reason"] for e in status(root)["errors"]}


def test_errors_of_deleted_or_renamed_files_are_no_longer_listed(tmp_path: Path) -> None:
    """Defect 8: errors stayed listed for files that were deleted or renamed."""
    root = tmp_path / "root"
    write_config(root)
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "fake.png").write_bytes(b"not a png at all, just text" * 10)
    (inbox / "other.png").write_bytes(b"also not an image" * 10)
    bestshot("scan", root=root)
    assert {"inbox/fake.png", "inbox/other.png"} <= set(open_error_paths(root))
    (inbox / "fake.png").unlink()
    (inbox / "other.png").rename(inbox / "other.txt")
    bestshot("scan", root=root)
    assert not {"inbox/fake.png", "inbox/other.png"} & set(open_error_paths(root))


def test_a_symlinked_folder_in_the_inbox_is_reported(tmp_path: Path) -> None:
    """Defect 8: symlinked folders in the inbox were skipped with no status entry."""
    root = tmp_path / "root"
    write_config(root)
    elsewhere = tmp_path / "elsewhere"
    write_png(elsewhere / "a.png", textured(1))
    (root / "inbox").mkdir(parents=True)
    (root / "inbox" / "linked").symlink_to(elsewhere, target_is_directory=True)
    bestshot("scan", root=root)
    errs = open_error_paths(root)
    assert "symbolic link to a folder" in errs.get("inbox/linked", ""), errs
    assert filed_sets(root) == {} and (elsewhere / "a.png").exists()  # still not followed


def test_yaml_nested_20000_deep_reads_as_bad_yaml_with_a_limit(tmp_path: Path) -> None:
    """Defect 8: YAML nested 20,000 deep was reported as `internal error: RecursionError`."""
    root = tmp_path / "root"
    write_config(root)
    write_png(root / "inbox" / "deep.png", textured(2))
    (root / "inbox" / "deep.yaml").write_text("prompt: " + "[" * 20000 + "]" * 20000 + "\n")
    bestshot("scan", root=root)
    reason = open_error_paths(root)["inbox/deep.png"]
    assert "invalid YAML" in reason and "nested deeper than 100 levels" in reason, reason
    assert "RecursionError" not in reason


def test_an_area_folder_linked_out_of_the_root_is_refused(tmp_path: Path) -> None:
    """Defect 8: `raw -> /elsewhere` filed images outside the root while `doctor` said all is well."""
    root = tmp_path / "root"
    write_config(root)
    bestshot("scan", root=root)  # a library first: the user then swaps raw/ for a link
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root.joinpath("raw").rmdir()
    root.joinpath("raw").symlink_to(elsewhere, target_is_directory=True)
    for i in range(2):
        write_png(root / "inbox" / "s" / f"i{i}.png", textured(10 + i))
    res = bestshot("scan", root=root, check=False)
    assert res.returncode == 2 and "outside the root" in res.stderr, res.stderr
    assert list(elsewhere.iterdir()) == []  # nothing was filed out there
    doc = bestshot("doctor", root=root, check=False)
    assert doc.returncode == 1 and "[!!] every folder resolves inside the root" in doc.stdout, doc.stdout
    info = json.loads(bestshot("status", "--json", root=root).stdout)
    assert any(e["kind"] == "outside_root" and e["path"] == "raw" for e in info["errors"]), info["errors"]


@pytest.mark.slow
def test_an_empty_or_truncated_inbox_file_does_not_hold_loose_sets_open(tmp_path: Path) -> None:
    """Defect 8: an empty or truncated file in the inbox held every loose set open until its
    incomplete timeout (30 s) after each start."""
    root = tmp_path / "root"
    write_config(root, {"watch": {"incomplete_timeout_seconds": 60.0}})
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "empty.png").write_bytes(b"")
    good = write_png(tmp_path / "t.png", textured(3, w=200, h=300))
    (inbox / "truncated.png").write_bytes(good.read_bytes()[:500])
    with DaemonProc(root):
        for i in range(2):
            p = write_png(tmp_path / "stage" / f"loose{i}.png", textured(40 + i), {"parameters": "one prompt"})
            shutil.move(str(p), inbox / p.name)
        # Filed by quiet time (1.5 s), long before either incomplete file times out (60 s).
        wait_for(lambda: filed_sets(root), timeout=45, what="the loose set filed")
        assert not db_rows(root, "select path from errors where stage = 'settle'")  # they had not timed out
    assert (inbox / "empty.png").exists() and (inbox / "truncated.png").exists()


def test_log_refuses_unknown_sets_and_implausible_times(tmp_path: Path) -> None:
    """Defect 8: `bestshot log` accepted any set_id and the years 0001 and 9999."""
    root = tmp_path / "root"
    write_config(root)
    for i in range(2):
        write_png(root / "inbox" / "s" / f"i{i}.png", textured(20 + i))
    bestshot("scan", root=root)
    set_id = next(iter(filed_sets(root)))
    base = {"set_id": set_id, "images": ["i0.png", "i1.png"], "winner": "i0.png", "needs_crop": False}
    base |= {"delete": [], "anomaly_tags": []}
    lines = [
        dict(base, ts="2026-11-20T10:00:00+00:00"),
        dict(base, ts="0001-01-01T00:00:00+00:00"),
        dict(base, ts="9999-12-31T00:00:00+00:00"),
        dict(base, ts="2026-11-20T10:00:00+00:00", set_id="set_typo"),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in lines))
    res = bestshot("log", str(src), root=root, check=False)
    assert res.returncode == 1
    for n, why in ((2, "before 2000"), (3, "in the future"), (4, "unknown set 'set_typo'")):
        assert f"line {n}: rejected" in res.stderr and why in res.stderr, res.stderr
    assert db_rows(root, "select set_id from decisions") == [(set_id[4:],)]
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps(lines[3]))
    res = bestshot("log", str(other), "--allow-unknown", root=root, check=False)
    assert res.returncode == 0, res.stderr
    assert ("set_typo",) in db_rows(root, "select set_id from decisions")


def test_a_failing_move_observer_is_listed_and_the_others_still_run(tmp_path: Path) -> None:
    """An observer of moves (the decision tracker) that raises was only logged: the user's move
    went unrecorded with nothing in `status` to say so."""
    from core.config import load_config
    from core.events import FileMoved
    from daemon.app import build_ctx
    from tests.helpers import ingest

    root = tmp_path / "root"
    for i in range(2):
        write_png(root / "inbox" / "s" / f"s_{i}.png", textured(i))
    cfg = load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}})
    ctx = build_ctx(cfg)
    pipeline = ingest(ctx)
    seen: list[tuple[str | None, str | None]] = []

    def broken(_sha: str, _old: str | None, _new: str | None, _when: float, _live: bool) -> None:
        raise RuntimeError("observer defect")

    def after(_sha: str, old: str | None, new: str | None, _when: float, _live: bool) -> None:
        seen.append((old, new))

    pipeline.engine.move_observers[:0] = [broken]
    pipeline.engine.move_observers.append(after)
    (folder,) = filed_sets(root)
    src = root / "raw" / folder / "s_1.png"
    dst = root / "exports" / "approved" / "s_1.png"
    src.rename(dst)
    pipeline.engine.handle(FileMoved(src, dst))
    ctx.store.close()
    assert seen == [(f"raw/{folder}/s_1.png", "exports/approved/s_1.png")]
    errors = {e["path"]: e for e in status(root)["errors"]}
    assert "observer defect" in errors["exports/approved/s_1.png"]["reason"]
    assert errors["exports/approved/s_1.png"]["stage"] == "decisions"


def test_learned_files_in_force_that_cannot_be_read_are_listed(tmp_path: Path) -> None:
    """The daemon runs without a learned file it cannot read (geometric cue scores, unscored
    hands, the prior's ranking) and only logged it; status said the model was in force."""
    from core.config import load_config
    from daemon.anomaly.hand_model import models_dir
    from daemon.app import build_ctx
    from daemon.rank.ranking import rank_dir
    from daemon.store import records
    from daemon.store.learned_state import CALIBRATION_KEY, HAND_MODEL_KEY, RANK_MODEL_KEY, calibration_dir

    root = tmp_path / "root"
    cfg = load_config(root=root, env={}, overrides={"extractors": {"enabled": ["phash"]}})
    ctx = build_ctx(cfg)
    assert not status(root)["errors"]  # nothing in force: nothing to read
    with ctx.store.write() as conn:
        for key, version in ((CALIBRATION_KEY, "cal-1"), (HAND_MODEL_KEY, "hand-1"), (RANK_MODEL_KEY, "rank-1")):
            records.put_state(conn, key, version)
    ctx.store.close()
    calibration_dir(cfg).mkdir(parents=True)
    (calibration_dir(cfg) / "cal-1.json").write_text("{not json")
    models_dir(cfg).mkdir(parents=True)
    (models_dir(cfg) / "hand-1.json").write_text("[]")
    # The ranking model's file is missing altogether.
    errors = {e["path"]: e for e in status(root)["errors"]}
    assert set(errors) == {"models/anomaly/cal-1.json", "models/hands/hand-1.json", "models/rank/rank-1.json"}
    assert str(rank_dir(ctx).relative_to(root) / "rank-1.json") in errors
    assert "geometric scores" in errors["models/anomaly/cal-1.json"]["reason"]
    assert "hands are not scored" in errors["models/hands/hand-1.json"]["reason"]
    assert "the prior ranks" in errors["models/rank/rank-1.json"]["reason"]
    text = bestshot("status", root=root).stdout
    assert "models/hands/hand-1.json" in text
