"""Real photos with nothing to remove keep the full frame, through `bestshot scan`.

The GAICD photos (../shared/data/crop_scored) are real: no anatomy errors. On two of them the pose
model sees a wrist where no hand is detected (`hand_undetected`: the hand could not be checked,
which is no evidence of a defect). The crop proposal used to cut those regions away, and people
rated those crops below the uncropped photo (benchmarks/crop_quality.py). Now the full frame is
proposed, the image goes to review, and the crops that remove the regions are only fallbacks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import bestshot, db_rows, write_config

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

PHOTOS = ("297406.jpg", "302166.jpg", "211958.jpg")
ENABLED = ["phash", "hands", "pose", "face", "saliency", "quality", "anomalies", "crop"]


@pytest.fixture(scope="module")
def scanned(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gaicd") / "root"
    folder = root / "inbox" / "set_gaicd"
    folder.mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(shared_data / "crop_scored" / name, folder / name)
    write_config(root, {"extractors": {"enabled": ENABLED}})
    bestshot("scan", "--mode", "recommend", root=root, timeout=600)
    return root


def _by_name(root: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """name -> (anomaly report, crop proposal) as the daemon stored them."""
    out = {}
    for sha, path in db_rows(root, "SELECT sha256, path FROM images"):
        report = json.loads((root / "sidecar" / "anomalies" / f"{sha}.json").read_text())
        crop = json.loads((root / "labels" / "crops" / f"{sha}.crop.json").read_text())
        out[Path(path).name] = (report, crop)
    return out


def test_nothing_flagged_means_the_full_frame(scanned: Path) -> None:
    got = _by_name(scanned)
    assert sorted(got) == sorted(PHOTOS)
    unchecked = 0
    for name, (report, crop) in got.items():
        suspects = [r for r in report["uncertain_regions"] if r["tag"] == "hand_suspect"]
        assert report["anomalies"] == [] and suspects == [], f"{name}: a real photo flagged as defective"
        w, h = crop["image_size"]
        assert crop["best"]["box"] == {"x": 0, "y": 0, "w": w, "h": h}, (name, crop["verdict"], crop["reason"])
        assert crop["verdict"] in ("no_crop_needed", "review"), crop["reason"]
        if report["uncertain_regions"]:
            unchecked += 1
            assert crop["verdict"] == "review" and "check by eye" in crop["reason"]
            ratio = crop["aspect"]["ratio"]
            for fb in crop["fallbacks"]:  # the crops that would remove them, exact aspect
                b = fb["box"]
                assert b["w"] * ratio[1] == b["h"] * ratio[0] and fb["removed"], fb
        else:
            assert crop["verdict"] == "no_crop_needed" and crop["fallbacks"] == []
    # What made this test fail before: regions that could not be checked were cropped away.
    assert unchecked >= 1, "no photo had an unchecked region: the case this test guards is not exercised"


def test_proposal_json_says_no_crop(scanned: Path) -> None:
    (proposal_file,) = list((scanned / "raw").glob("*/proposal.json"))
    body = json.loads(proposal_file.read_text())
    crop = body["crop"]
    w, h = crop["image_size"]
    assert crop["verdict"] != "crop" and crop["best"]["box"] == {"x": 0, "y": 0, "w": w, "h": h}
