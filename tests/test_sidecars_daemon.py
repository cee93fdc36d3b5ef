"""Sidecars through the daemon: `bestshot scan` over real images, the stored rows and files,
near-duplicate groups, version bumps, the one-shot CLI commands and per-image failure isolation.

CLIP weights are absent by construction (empty hub cache, empty <root>/models), so every test
here also checks that nothing stands in for them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.config import load_config
from core.extractors.phash import PhashExtractor
from core.extractors.quality import QualityExtractor
from core.sidecar_types import POSE
from daemon.app import build_ctx
from daemon.extractors.sidecar_store import FOOT_POINTS
from daemon.pipeline import Pipeline
from tests.helpers import bestshot, db_rows, status, textured, write_config, write_png

pytestmark = pytest.mark.slow

ALL = ["phash", "clip", "hands", "pose", "face", "saliency", "quality"]
RUNNABLE = ["phash", "hands", "pose", "face", "saliency", "quality"]  # all but clip, whose weights are absent
DETECT = ["hands", "pose", "face", "saliency", "quality", "anomalies", "crop"]
PORTRAITS = ("4c82eec2d38678dd5c379b9e09876d69", "5c1bf7bf78249cf812cc6ba2914f5c5c")


def sha_of(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def no_clip_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point the user's Hugging Face cache at an empty folder: CLIP is unavailable on any machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty_hub")))
        yield


@pytest.fixture(scope="module")
def scanned(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One `bestshot scan` over 2 portraits, 1 malformed-hands photo, a noised copy and a truncated PNG."""
    root = tmp_path_factory.mktemp("scan") / "root"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    portraits = shared_data / "ai_portraits_hands"
    shutil.copy(portraits / "image" / f"{PORTRAITS[0]}.png", inbox / "a.png")
    shutil.copy(portraits / "image" / f"{PORTRAITS[1]}.png", inbox / "b.png")
    shutil.copy(shared_data / "ai_malformed_hands" / "1.jpg", inbox / "c.jpg")
    arr = np.asarray(Image.open(inbox / "a.png").convert("RGB"))
    noise = np.random.default_rng(0).normal(0, 3, arr.shape)
    write_png(inbox / "a_dup.png", np.clip(arr + noise, 0, 255).astype(np.uint8))
    whole = (inbox / "b.png").read_bytes()
    (inbox / "bad.png").write_bytes(whole[: len(whole) // 2])
    bad_bytes = (inbox / "bad.png").read_bytes()
    shas = {n: sha_of(inbox / n) for n in ("a.png", "b.png", "c.jpg", "a_dup.png")}
    gt = {
        shas["a.png"]: json.loads((portraits / "keypoints" / f"{PORTRAITS[0]}.json").read_text()),
        shas["a_dup.png"]: json.loads((portraits / "keypoints" / f"{PORTRAITS[0]}.json").read_text()),
        shas["b.png"]: json.loads((portraits / "keypoints" / f"{PORTRAITS[1]}.json").read_text()),
    }
    write_config(root, {"extractors": {"enabled": ALL}})
    out = bestshot("scan", root=root, timeout=300)
    return {
        "root": root,
        "shas": shas,
        "gt": gt,
        "status": status(root),
        "bad_bytes": bad_bytes,
        "scan_out": out.stdout,
    }


def sidecar_rows(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(sha, extractor) -> row of the latest version."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for sha, ext, ver, payload, blob, files in db_rows(
        root, "SELECT sha256, extractor, version, payload, blob, files FROM sidecars ORDER BY version"
    ):
        out[(sha, ext)] = {
            "version": ver,
            "payload": json.loads(payload),
            "blob": blob,
            "files": json.loads(files) if files else [],
        }
    return out


# ---- the scan ----------------------------------------------------------------------------------


def test_every_good_image_has_a_row_per_available_extractor_and_no_clip(scanned: dict[str, Any]) -> None:
    root, shas = scanned["root"], scanned["shas"]
    st = scanned["status"]
    available = sorted(n for n, e in st["extractors"].items() if e["available"])
    assert available == sorted(RUNNABLE)
    rows = sidecar_rows(root)
    for name, sha in shas.items():
        have = sorted(ext for (s, ext) in rows if s == sha)
        assert have == sorted(RUNNABLE), name
    assert st["pending_jobs"] == 0
    job_states = db_rows(root, "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state")
    assert sorted(job_states) == sorted((k, "done", len(shas)) for k in RUNNABLE)
    # Nothing fakes an embedding: no clip row, no clip job, no blob anywhere.
    assert db_rows(root, "SELECT COUNT(*) FROM sidecars WHERE extractor = 'clip' OR blob IS NOT NULL") == [(0,)]
    assert db_rows(root, "SELECT COUNT(*) FROM jobs WHERE kind = 'clip'") == [(0,)]


def test_status_reports_clip_unavailable_with_the_fetch_fix(scanned: dict[str, Any]) -> None:
    clip = scanned["status"]["extractors"]["clip"]
    assert clip["available"] is False
    assert "weights" in clip["reason"]
    assert "bestshot models fetch" in clip["fix"]


def test_hand_keypoints_file_is_21_pixel_landmarks_per_hand(scanned: dict[str, Any]) -> None:
    root, rows = scanned["root"], sidecar_rows(scanned["root"])
    dims = {s: (w, h) for s, w, h in db_rows(root, "SELECT sha256, width, height FROM images")}
    for sha, (w, h) in dims.items():
        f = root / "sidecar" / "hands" / f"{sha}.keypoints.json"
        doc = json.loads(f.read_text())
        assert doc == rows[(sha, "hands")]["payload"]
        assert rows[(sha, "hands")]["files"] == [f"sidecar/hands/{sha}.keypoints.json"]
        assert doc["image_size"] == [w, h]
        assert doc["hands"], f"no hand found in {sha[:12]}, whose hands are plainly visible"
        for hand in doc["hands"]:
            lm = np.asarray(hand["landmarks"], dtype=float)
            assert lm.shape == (21, 3)
            assert hand["handedness"] in ("Left", "Right") and 0 < hand["score"] <= 1
            # Pixels, not normalised: a good part of the hand lies inside the image, and not in [0, 1].
            inside = (lm[:, 0] >= 0) & (lm[:, 0] <= w) & (lm[:, 1] >= 0) & (lm[:, 1] <= h)
            assert inside.mean() >= 0.3 and lm[:, :2].max() > 2
            # Landmarks of a hand cut by the frame are extrapolated, but not by more than a hand.
            assert lm[:, 0].min() > -0.15 * w and lm[:, 0].max() < 1.15 * w
            assert lm[:, 1].min() > -0.15 * h and lm[:, 1].max() < 1.15 * h
    # On the portraits, each detected hand sits on an annotated one (centroid within 5% of the diagonal).
    for sha, gt in scanned["gt"].items():
        gt_centres = [(np.mean(hd[:, 0]) * gt["W"], np.mean(hd[:, 1]) * gt["H"]) for hd in np.asarray(gt["hands"])]
        tol = 0.05 * float(np.hypot(gt["W"], gt["H"]))
        for hand in rows[(sha, "hands")]["payload"]["hands"]:
            lm = np.asarray(hand["landmarks"])
            d = min(np.hypot(lm[:, 0].mean() - x, lm[:, 1].mean() - y) for x, y in gt_centres)
            assert d < tol, (sha[:12], d)


def test_facefoot_file_has_face_boxes_and_foot_points(scanned: dict[str, Any]) -> None:
    root, rows = scanned["root"], sidecar_rows(scanned["root"])
    dims = {s: (w, h) for s, w, h in db_rows(root, "SELECT sha256, width, height FROM images")}
    for sha, (w, h) in dims.items():
        doc = json.loads((root / "sidecar" / "det" / f"{sha}.facefoot.json").read_text())
        assert set(doc) >= {"faces", "feet"}
        assert doc["image_size"] == [w, h]
        assert doc["faces"] == rows[(sha, "face")]["payload"]["faces"]
        assert len(doc["faces"]) >= 1, f"no face in {sha[:12]}"
        for face in doc["faces"]:
            b = face["box"]
            assert min(b["x"], b["y"]) >= -1 and b["x"] + b["w"] <= w + 1 and b["y"] + b["h"] <= h + 1
            assert b["w"] > 10 and b["h"] > 10
        poses = rows[(sha, "pose")]["payload"]["poses"]
        assert len(doc["feet"]) == len(poses) >= 1
        for feet, pose in zip(doc["feet"], poses, strict=True):
            assert set(feet) == set(FOOT_POINTS)
            for name in FOOT_POINTS:
                lm = pose["landmarks"][POSE[name]]
                assert (feet[name]["x"], feet[name]["y"], feet[name]["visibility"]) == (lm[0], lm[1], lm[3])


def test_saliency_file_is_float16_at_the_recorded_scale(scanned: dict[str, Any]) -> None:
    root, rows = scanned["root"], sidecar_rows(scanned["root"])
    dims = {s: (w, h) for s, w, h in db_rows(root, "SELECT sha256, width, height FROM images")}
    for sha, (w, h) in dims.items():
        row = rows[(sha, "saliency")]
        assert row["files"] == [f"sidecar/saliency/{sha}.npy"]
        mask = np.load(root / row["files"][0], allow_pickle=False)
        p = row["payload"]
        assert mask.dtype == np.float16
        assert p["scale"] == pytest.approx(min(1.0, 320 / max(w, h)))
        assert list(mask.shape) == p["shape"] == [round(h * p["scale"]), round(w * p["scale"])]
        assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
        assert float((mask > 0.5).mean()) == pytest.approx(p["subject_fraction"], abs=0.01)
        assert 0.05 < p["subject_fraction"] < 0.95, "a person fills part of every test image"
        # Quality reads the same subject mask.
        assert rows[(sha, "quality")]["payload"]["subject_fraction"] == p["subject_fraction"]
        assert isinstance(rows[(sha, "quality")]["payload"]["brisque"], float)


def test_parquet_files_one_hash_row_per_image_and_no_embeddings(scanned: dict[str, Any]) -> None:
    root = scanned["root"]
    hashes = pq.read_table(root / "sidecar" / "hashes.parquet").to_pylist()
    emb = pq.read_table(root / "sidecar" / "embeddings.parquet")
    assert emb.num_rows == 0 and "embedding" in emb.column_names
    db = {s: (path, ph) for s, path, ph in db_rows(root, "SELECT sha256, path, phash FROM images")}
    assert sorted(r["sha256"] for r in hashes) == sorted(scanned["shas"].values()) == sorted(db)
    for r in hashes:
        assert re.fullmatch(r"[0-9a-f]{16}", r["phash"])
        assert (r["path"], r["phash"]) == db[r["sha256"]]


def test_near_duplicates_form_one_group_with_the_phash_only_rule(scanned: dict[str, Any]) -> None:
    root, shas, st = scanned["root"], scanned["shas"], scanned["status"]
    paths = {s: p for s, p in db_rows(root, "SELECT sha256, path FROM images")}
    assert st["duplicate_groups"] == [sorted([paths[shas["a.png"]], paths[shas["a_dup.png"]]])]
    assert "pHash only" in st["dedup_rule"] and "embeddings are unavailable" in st["dedup_rule"]
    assert {r for (r,) in db_rows(root, "SELECT DISTINCT rule FROM dup_groups")} == {st["dedup_rule"]}
    # Within their set, the later one is marked as a near-duplicate of the first.
    marks = {s: d for s, d in db_rows(root, "SELECT sha256, near_duplicate_of FROM set_members")}
    pair = {shas["a.png"], shas["a_dup.png"]}
    assert sorted(v is None for s, v in marks.items() if s in pair) == [False, True]
    assert all(v in pair for s, v in marks.items() if s in pair and v is not None)
    assert all(v is None for s, v in marks.items() if s not in pair)


def test_truncated_image_is_an_error_left_in_place_while_others_complete(scanned: dict[str, Any]) -> None:
    root, st = scanned["root"], scanned["status"]
    bad = [e for e in st["errors"] if e["path"] == "inbox/bad.png"]
    assert len(bad) == 1 and "IEND" in bad[0]["reason"], st["errors"]
    assert (root / "inbox" / "bad.png").read_bytes() == scanned["bad_bytes"]
    assert st["images_by_state"] == {"present": 4}
    assert [e for e in st["errors"] if e["path"] != "inbox/bad.png"] == []


def test_export_parquet_rewrites_the_files_from_the_db(scanned: dict[str, Any]) -> None:
    side = scanned["root"] / "sidecar"
    before = pq.read_table(side / "hashes.parquet").to_pylist()
    (side / "hashes.parquet").unlink()
    (side / "embeddings.parquet").unlink()
    out = bestshot("export", "parquet", root=scanned["root"]).stdout
    assert "(0 rows)" in out and "(4 rows)" in out
    assert pq.read_table(side / "hashes.parquet").to_pylist() == before
    assert pq.read_table(side / "embeddings.parquet").num_rows == 0


# ---- version bumps -----------------------------------------------------------------------------


def requeue(root: Path) -> int:
    """What the daemon does at start-up: reconcile (which enqueues missing jobs), then drain the queue."""
    ctx = build_ctx(load_config(root / "bestshot.yaml", root=root))
    try:
        handled: list[int] = []
        pipeline = Pipeline(ctx, without=("duplicates", "parquet export", "ranking"))
        pipeline.run_to_completion(recover=False, extracted=handled.append)
        return sum(handled)
    finally:
        for e in ctx.extractors:
            e.close()
        ctx.store.close()


def copy_root(scanned: dict[str, Any], tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(scanned["root"], root)
    return root


def test_version_bump_recomputes_and_keeps_old_rows(
    scanned: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_root(scanned, tmp_path)
    old = sidecar_rows(root)
    old_saliency = db_rows(root, "SELECT sha256, version FROM sidecars WHERE extractor = 'saliency'")
    v = QualityExtractor.version
    monkeypatch.setattr(QualityExtractor, "version", v + 1)  # the documented recompute trigger
    assert requeue(root) == 4
    got = db_rows(root, "SELECT sha256, version, payload FROM sidecars WHERE extractor = 'quality' ORDER BY version")
    shas = sorted(scanned["shas"].values())
    assert sorted(s for s, ver, _ in got if ver == v) == shas
    assert sorted(s for s, ver, _ in got if ver == v + 1) == shas
    for s, ver, payload in got:  # same code, same pixels: the recomputed values match
        if ver == v + 1:
            assert json.loads(payload) == old[(s, "quality")]["payload"]
    # Quality's dependency was recomputed in memory, not stored again under a new version.
    assert db_rows(root, "SELECT sha256, version FROM sidecars WHERE extractor = 'saliency'") == old_saliency
    assert db_rows(
        root, f"SELECT COUNT(*) FROM jobs WHERE kind = 'quality' AND version = {v + 1} AND state = 'done'"
    ) == [(4,)]
    assert requeue(root) == 0  # nothing left to do


def test_phash_version_bump_recomputes(
    scanned: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copy_root(scanned, tmp_path)
    v = PhashExtractor.version
    monkeypatch.setattr(PhashExtractor, "version", v + 1)
    requeue(root)
    got = db_rows(root, "SELECT version, COUNT(*) FROM sidecars WHERE extractor = 'phash' GROUP BY version")
    assert sorted(got) == [(v, 4), (v + 1, 4)]


# ---- one-shot commands -------------------------------------------------------------------------


def test_phash_command_over_a_folder(shared_data: Path, tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    (loose / "sub").mkdir(parents=True)
    a = shutil.copy(shared_data / "ai_portraits_hands" / "image" / f"{PORTRAITS[0]}.png", loose / "a.png")
    b = shutil.copy(shared_data / "ai_malformed_hands" / "2.jpg", loose / "sub" / "b.jpg")
    (loose / "notes.txt").write_text("not an image")
    root = tmp_path / "root"
    out = bestshot("phash", str(loose), root=root).stdout
    assert "2 images done, 0 failed" in out
    import imagehash

    want = {sha_of(Path(p)): str(imagehash.phash(Image.open(p))) for p in (a, b)}
    got = {s: json.loads(p)["phash"] for s, p in db_rows(root, "SELECT sha256, payload FROM sidecars")}
    assert got == want  # only phash rows, and the values imagehash gives on the file
    assert {r["sha256"]: r["phash"] for r in pq.read_table(root / "sidecar" / "hashes.parquet").to_pylist()} == want


def test_detect_command_on_a_file(shared_data: Path, tmp_path: Path) -> None:
    img = Path(shutil.copy(shared_data / "ai_portraits_hands" / "image" / f"{PORTRAITS[1]}.png", tmp_path / "p.png"))
    root = tmp_path / "root"
    out = bestshot("detect", str(img), root=root, timeout=180).stdout
    assert "1 images done, 0 failed" in out
    sha = sha_of(img)
    assert sorted(e for (e,) in db_rows(root, "SELECT extractor FROM sidecars")) == sorted(DETECT)
    assert json.loads((root / "sidecar" / "hands" / f"{sha}.keypoints.json").read_text())["hands"]
    assert json.loads((root / "sidecar" / "det" / f"{sha}.facefoot.json").read_text())["faces"]
    assert np.load(root / "sidecar" / "saliency" / f"{sha}.npy").dtype == np.float16


def test_embed_command_fails_clearly_without_weights(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    res = bestshot("embed", str(shared_data / "ai_malformed_hands" / "3.jpg"), root=root, check=False)
    assert res.returncode != 0
    assert "clip is unavailable" in res.stderr and "bestshot models fetch" in res.stderr
    assert db_rows(root, "SELECT COUNT(*) FROM sidecars") == [(0,)]


def test_models_list_shows_u2netp_present_and_open_clip_missing(tmp_path: Path) -> None:
    res = bestshot("models", "list", root=tmp_path / "root", check=False)
    assert res.returncode == 1  # something is missing
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.strip()}
    missing = sorted(name for name, ln in lines.items() if re.search(r"\s+missing\s", ln))
    assert missing == ["open_clip"]
    assert "bestshot models fetch" in lines["open_clip"]
    assert re.search(r"\d+\.\d MB", lines["u2netp"]) and lines["u2netp"].rstrip().endswith("u2netp.onnx")


# ---- per-image failure isolation ---------------------------------------------------------------


def test_odd_images_do_not_stop_the_others(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    good = Path(
        shutil.copy(
            shared_data / "ai_portraits_hands" / "image" / "9cb940e48d21acc3272b25a5a57fe1c5.png", inbox / "good.png"
        )
    )
    good_sha = sha_of(good)  # before the scan files it into raw/
    write_png(inbox / "strip.png", textured(5, w=20000, h=20))
    write_png(inbox / "dot.png", np.full((1, 1, 3), 128, np.uint8))
    write_config(root, {"extractors": {"enabled": ALL}})
    bestshot("scan", root=root, timeout=300)
    st = status(root)
    assert st["images_by_state"] == {"present": 3} and st["pending_jobs"] == 0
    rows = sidecar_rows(root)
    paths = {s: p for s, p in db_rows(root, "SELECT sha256, path FROM images")}
    assert sorted(e for (s, e) in rows if s == good_sha) == sorted(RUNNABLE)
    assert not [e for e in st["errors"] if e["path"] == paths[good_sha]]
    failed = {(s, k): err for s, k, err in db_rows(root, "SELECT sha256, kind, error FROM jobs WHERE state = 'failed'")}
    for sha, path in paths.items():
        for name in RUNNABLE:
            if (sha, name) in rows:
                continue
            # No result: then a clear, per-extractor error for this image, in the queue and in status.
            assert failed.get((sha, name)), (path, name)
            assert [e for e in st["errors"] if e["path"] == path and e["stage"] == f"extract:{name}" and e["reason"]]
