"""The review page over real HTTP against a real `bestshot review` process on a scanned root."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.helpers import DaemonProc, bestshot, db_rows, session_lines, wait_for
from tests.review_support import ReviewProc, add_report, http, make_root, members, sha_of

pytestmark = pytest.mark.slow


def _queue(rp: ReviewProc) -> list[dict[str, Any]]:
    status, body = http(rp.url + "api/queue")
    assert status == 200
    return list(body["sets"])


def _tree(root: Path) -> dict[str, str]:
    """Every image file under raw/ and exports/ by content: what an action may change."""
    return {
        str(p.relative_to(root)): sha_of(p)
        for area in ("raw", "exports")
        for p in sorted((root / area).rglob("*"))
        if p.is_file() and p.suffix == ".png"
    }


def test_actions_move_files_write_lines_and_undo(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", sets=3)
    with ReviewProc(root) as rp:
        order = [s["set_id"] for s in _queue(rp)]
        assert len(order) == 3
        a, b, c = order
        ma, mb, mc = members(root, a), members(root, b), members(root, c)
        add_report(
            root, mc[1][0], [{"tag": "extra_fingers", "box": {"x": 10, "y": 20, "w": 60, "h": 50}, "score": 0.8}]
        )

        # A: approve member 1; the others stay in the set folder as losers.
        status, res = http(rp.url + f"api/set/{a}/act", {"action": "approve", "winner": 1}, token=rp.token)
        assert status == 200, res
        approved = root / "exports" / "approved" / ma[1][2]
        assert sha_of(approved) == ma[1][0]
        assert a not in [s["set_id"] for s in _queue(rp)]  # decided: it left the queue

        # B: crop member 0 with an exact 2:3 box; the crop is written in the source's format.
        box = {"x": 20, "y": 30, "w": 200, "h": 300}
        status, res = http(
            rp.url + f"api/set/{b}/act", {"action": "crop", "winner": 0, "crop_box": box}, token=rp.token
        )
        assert status == 200, res
        src = root / "exports" / "to_crop" / mb[0][2]
        assert sha_of(src) == mb[0][0]
        cropped = root / "exports" / "cropped" / mb[0][2]
        with Image.open(cropped) as im, Image.open(src) as full:
            assert im.format == "PNG" and im.size == (200, 300)
            assert im.tobytes() == full.crop((20, 30, 220, 330)).tobytes()

        # C: reject member 2 with two tags and say member 1's flagged box is not an anomaly, and
        # mark a missed one on member 0.
        labels = [
            {
                "image": mc[1][2],
                "box": {"x": 10, "y": 20, "w": 60, "h": 50},
                "tag": "extra_fingers",
                "label": "not_anomaly",
                "origin": "flagged",
            },
            {
                "image": mc[0][2],
                "box": {"x": 100, "y": 200, "w": 40, "h": 40},
                "tag": "long_hand",
                "label": "anomaly",
                "origin": "drawn",
            },
        ]
        req = {"action": "reject", "reject": {"2": ["extra_fingers", "warped_wrist"]}, "region_labels": labels}
        status, res = http(rp.url + f"api/set/{c}/act", req, token=rp.token)
        assert status == 200, res
        rejected = root / "exports" / "rejected" / "extra_fingers" / "warped_wrist" / mc[2][2]
        assert sha_of(rejected) == mc[2][0]

        lines = session_lines(root)
        assert [ln["set_id"] for ln in lines] == [f"set_{a}", f"set_{b}", f"set_{c}"]
        la, lb, lc = lines
        assert la["winner"] == ma[1][2] and la["needs_crop"] is False and la["anomaly_tags"] == []
        assert la["bestshot"]["source"] == "review" and la["bestshot"]["losers"] == [ma[0][2], ma[2][2]]
        assert lb["winner"] == mb[0][2] and lb["needs_crop"] is True and lb["crop_box"] == box
        assert lb["bestshot"]["crop"]["method"] == "exact"
        assert lc["winner"] is None and lc["delete"] is True and lc["bestshot"]["deleted"] == [mc[2][2]]
        assert lc["bestshot"]["image_tags"] == {mc[2][2]: ["extra_fingers", "warped_wrist"]}
        assert lc["bestshot"]["region_labels"] == labels

        # U undoes the last action (C): the file goes back, and a line retracts the decision.
        status, res = http(rp.url + "api/undo", {}, token=rp.token)
        assert status == 200, res
        assert sha_of(root / mc[2][1]) == mc[2][0] and not rejected.exists()
        assert c in [s["set_id"] for s in _queue(rp)]
        # ...and again (B): the crop file goes too, the winner is back in its folder.
        status, res = http(rp.url + "api/undo", {}, token=rp.token)
        assert status == 200, res
        assert not cropped.exists() and sha_of(root / mb[0][1]) == mb[0][0]

    lines = session_lines(root)
    assert len(lines) == 5
    assert lines[3]["set_id"] == f"set_{c}" and lines[3]["bestshot"]["retracted"] is True
    assert lines[3]["bestshot"]["region_labels"] == labels  # what the user said about regions still stands
    assert lines[4]["set_id"] == f"set_{b}" and lines[4]["bestshot"]["retracted"] is True
    journal = db_rows(root, "select batch_id, state from journal where batch_id is not null order by id")
    assert [s for _b, s in journal[:3]] == ["done", "undone", "undone"]  # A stands; B and C undone
    assert sum(1 for bid, _s in journal if bid.startswith("undo:review-")) == 2
    assert db_rows(root, "select count(*) from decisions where logged = 0") == [(0,)]


def test_bad_requests_change_nothing(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root", sets=1)
    with ReviewProc(root) as rp:
        (set_id,) = [s["set_id"] for s in _queue(rp)]
        before = _tree(root)
        act = rp.url + f"api/set/{set_id}/act"
        base = rp.url.split("/r/")[0]
        cases: list[tuple[int, tuple[str, Any, dict[str, Any]]]] = [
            (421, (rp.url + "api/queue", None, {"headers": {"Host": "evil.example:80"}})),  # DNS rebinding
            (404, (base + "/r/wrongtoken/api/queue", None, {})),
            (404, (base + "/", None, {})),
            (403, (act, {"action": "approve", "winner": 0}, {})),  # no token header
            (403, (act, {"action": "approve", "winner": 0}, {"token": "x" * 32})),
            (403, (act, {"action": "approve", "winner": 0}, {"token": rp.token, "headers": {"Origin": "http://evil"}})),
            (405, (act, None, {})),  # GET cannot change anything
            (400, (act, {"action": "explode", "winner": 0}, {"token": rp.token})),
            (400, (act, {"action": "approve", "winner": 7}, {"token": rp.token})),
            (400, (act, {"action": "approve", "winner": 0, "path": "/etc/passwd"}, {"token": rp.token})),
            (
                400,
                (
                    act,
                    {"action": "crop", "winner": 0, "crop_box": {"x": 0, "y": 0, "w": 100, "h": 100}},
                    {"token": rp.token},
                ),
            ),
            (
                400,
                (
                    act,
                    {"action": "crop", "winner": 0, "crop_box": {"x": 100, "y": 0, "w": 200, "h": 300}},
                    {"token": rp.token},
                ),
            ),
            (
                400,
                (
                    act,
                    {"action": "crop", "winner": 0, "crop_box": {"x": 0.5, "y": 0, "w": 2, "h": 3}},
                    {"token": rp.token},
                ),
            ),
            (400, (act, {"action": "crop", "winner": 0}, {"token": rp.token})),  # no proposed crop to accept
            (400, (act, {"action": "reject", "reject": {"0": ["../../etc"]}}, {"token": rp.token})),
            (
                400,
                (
                    act,
                    {"action": "reject", "reject": {"0": ["ok"]}, "region_labels": [{"image": "nope.png"}]},
                    {"token": rp.token},
                ),
            ),
            (404, (rp.url + "api/set/..%2F..%2Fetc/act", {"action": "approve", "winner": 0}, {"token": rp.token})),
            (404, (rp.url + "api/set/doesnotexist/act", {"action": "approve", "winner": 0}, {"token": rp.token})),
            (404, (rp.url + f"img/{set_id}/9/full", None, {})),
            (404, (rp.url + f"img/{set_id}/..%2F..%2Fbestshot.sqlite/full", None, {})),
        ]
        for want, (url, body, kw) in cases:
            status, res = http(url, body, **kw)
            assert status == want, (url, body, kw, status, res)
            if isinstance(res, dict):
                assert res.get("error"), res
        # A file that vanished meanwhile: reported, and the rest of the set still works.
        mem = members(root, set_id)
        gone = root / mem[2][1]
        shutil.move(str(gone), tmp_path / "elsewhere.png")
        status, view = http(rp.url + f"api/set/{set_id}")
        assert status == 200 and [m["present"] for m in view["members"]] == [True, True, False]
        status, res = http(act, {"action": "reject", "reject": {"2": ["long_hand"]}}, token=rp.token)
        assert status == 409 and "moved or deleted" in res["error"]
        assert _tree(root) == {k: v for k, v in before.items() if not k.endswith(mem[2][2])}
        assert session_lines(root) == []
        assert db_rows(root, "select count(*) from journal where batch_id is not null") == [(0,)]
        status, res = http(act, {"action": "approve", "winner": 0}, token=rp.token)
        assert status == 200, res
        page_status, html = http(rp.url)
        assert (
            page_status == 200
            and b"review.js" in html
            and b"http" not in html.split(b"<body")[1].replace(b'data-token="' + rp.token.encode() + b'"', b"")
        )  # no CDN: nothing external is loaded


def test_killed_page_then_daemon_logs_each_decision_once(tmp_path: Path) -> None:
    """The page decides two sets (one with a crop) and is killed -9; the daemon then starts on
    the root, recovers, sees every moved file and the crop, and writes no second line."""
    root = make_root(tmp_path / "root", sets=3, extra={"labels": {"close_after_seconds": 1.0}})
    with ReviewProc(root) as rp:
        a, b, c = [s["set_id"] for s in _queue(rp)]
        assert http(rp.url + f"api/set/{a}/act", {"action": "approve", "winner": 2}, token=rp.token)[0] == 200
        box = {"x": 0, "y": 0, "w": 128, "h": 192}
        status, _ = http(rp.url + f"api/set/{b}/act", {"action": "crop", "winner": 1, "crop_box": box}, token=rp.token)
        assert status == 200
        rp.kill9()
    assert len(session_lines(root)) == 2
    mc = members(root, c)
    with DaemonProc(root):
        # A Finder decision after the page's: once its line is there, the daemon has evaluated
        # every set past its 1 s closure, the page's included.
        shutil.move(str(root / mc[0][1]), root / "exports" / "approved" / mc[0][2])
        wait_for(lambda: any(ln["set_id"] == f"set_{c}" for ln in session_lines(root)), timeout=60, what="Finder line")
    lines = session_lines(root)
    assert sorted(ln["set_id"] for ln in lines) == sorted([f"set_{a}", f"set_{b}", f"set_{c}"])
    by_set = {ln["set_id"]: ln for ln in lines}
    assert by_set[f"set_{b}"]["crop_box"] == box and by_set[f"set_{c}"]["bestshot"]["source"] == "observed"
    assert db_rows(root, "select count(*) from crops") == [(1,)]  # never recovered from pixels again


def test_daemon_serves_the_page(tmp_path: Path) -> None:
    root = make_root(
        tmp_path / "root",
        sets=2,
        extra={"review": {"enabled": True, "port": 0}, "labels": {"close_after_seconds": 1.0}},
    )
    with DaemonProc(root) as d:
        url = wait_for(lambda: (root / "logs" / "review.url").exists() and (root / "logs" / "review.url").read_text())
        url = url.strip()
        token = url.rstrip("/").rsplit("/", 1)[1]
        # The daemon holds the root: a second writer is refused, and told where the page is.
        res = bestshot("review", "--port", "0", root=root, check=False, timeout=60)
        assert res.returncode == 2 and "review.url" in res.stderr
        status, q = http(url + "api/queue")
        a, b = [s["set_id"] for s in q["sets"]]
        status, out = http(url + f"api/set/{a}/act", {"action": "approve", "winner": 0}, token=token)
        assert status == 200, out
        mb = members(root, b)
        shutil.move(str(root / mb[1][1]), root / "exports" / "approved" / mb[1][2])
        wait_for(lambda: len(session_lines(root)) >= 2, timeout=60, what="the Finder decision's line")
        d.stop()
    lines = session_lines(root)
    assert [ln["bestshot"]["source"] for ln in lines] == ["review", "observed"]
    con = sqlite3.connect(root / "bestshot.sqlite")
    try:
        assert con.execute("select count(*) from decisions where source = 'review'").fetchone() == (1,)
    finally:
        con.close()
    assert json.loads(json.dumps(lines[0]))["winner"] == members(root, a)[0][2]


def test_region_labels_feed_the_calibration(tmp_path: Path) -> None:
    """A rejected image's flagged region counts as removed by its tag, unless the user said on the
    page that it is not an anomaly: then it is a kept outcome for its cue."""
    from core.config import load_config
    from daemon.anomaly.calibration import decision_outcomes
    from daemon.anomaly.learning_data import decided_images
    from daemon.app import build_ctx

    root = make_root(tmp_path / "root", sets=1)
    with ReviewProc(root) as rp:
        (set_id,) = [s["set_id"] for s in _queue(rp)]
        mem = members(root, set_id)
        region = {"x": 10, "y": 20, "w": 60, "h": 50}
        for i in (1, 2):
            flagged = {"tag": "extra_fingers", "box": region, "score": 0.8, "evidence": {"measurement": "finger_count"}}
            add_report(root, mem[i][0], [flagged])
        label = {"image": mem[1][2], "box": region, "tag": "extra_fingers", "label": "not_anomaly", "origin": "flagged"}
        req = {
            "action": "approve",
            "winner": 0,
            "reject": {"1": ["extra_fingers"], "2": ["extra_fingers"]},
            "region_labels": [label],
        }
        status, res = http(rp.url + f"api/set/{set_id}/act", req, token=rp.token)
        assert status == 200, res
    ctx = build_ctx(load_config(root / "bestshot.yaml", root=root), with_extractors=False)
    with ctx.store.read() as conn:
        regions = {d.sha256: d.regions for d in decided_images(conn)}
        outcomes = decision_outcomes(ctx, conn)
    assert [r.to_dict() for r in regions[mem[1][0]]] == [label] and regions[mem[2][0]] == ()
    # Member 2 (no label): removed by its tag; member 1: the user said it is not an anomaly.
    assert sorted((o.cue, o.removed) for o in outcomes) == [("finger_count", False), ("finger_count", True)]
