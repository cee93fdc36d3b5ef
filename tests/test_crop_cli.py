"""`bestshot crop` end to end with the real extractors."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.anomaly.model import AnomalyReport
from core.crop.proposal import CropProposal
from daemon.commands import crop

pytestmark = pytest.mark.slow


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bestshot")
    subs = parser.add_subparsers(dest="command", required=True)
    crop.register(subs)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.mark.shared_data
def test_crop_real_image_writes_json_preview_and_sidecar(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = tmp_path / "photos" / "3.jpg"
    img.parent.mkdir()
    shutil.copyfile(shared_data / "ai_malformed_hands" / "3.jpg", img)
    root = tmp_path / "root"
    assert run_cli(["crop", "--img", str(img), "--aspect", "from_original", "--root", str(root)]) == 0
    out = img.with_name("3.crop.json")
    doc = json.loads(out.read_text())
    p = CropProposal.from_dict(doc)
    assert p.verdict == "crop" and p.best.residual == []
    assert p.best.w == p.best.h  # 512x512 keeps 1:1
    assert set(doc["best"]["box"]) == {"x", "y", "w", "h"}
    preview = Image.open(io.BytesIO(img.with_name("3.crop.jpg").read_bytes()))
    assert preview.format == "JPEG" and preview.size == (512, 512)
    sidecars = list((root / "sidecar" / "anomalies").glob("*.json"))
    assert len(sidecars) == 1 and sidecars[0].stem == doc["sha256"]
    report = AnomalyReport.from_json(sidecars[0].read_text())
    assert "extra_fingers" in report.tags()
    said = capsys.readouterr().out
    assert "3.jpg: crop" in said and "extra_fingers" in said and str(out) in said


def test_crop_without_people_says_no_crop_needed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    img = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "elsewhere" / "n.crop.json"
    assert run_cli(["crop", "--img", str(img), "--out", str(out)]) == 0
    p = CropProposal.from_json(out.read_text())
    assert p.verdict == "no_crop_needed" and (p.best.w, p.best.h) == (160, 120)
    assert (tmp_path / "elsewhere" / "n.crop.jpg").is_file()
    assert "no_crop_needed" in capsys.readouterr().out
