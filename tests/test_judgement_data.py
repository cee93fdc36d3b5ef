"""The labelled-data plumbing of the judgement benchmark and the prior fit: lenient label parsing,
the fixed set rule, per-part evidence from a report, and the shipped prior matching its card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.rank.settings import PriorWeights

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from anatomy_data import LabelledDataError, groups_of, load_dataset, set_folders, sets_of  # noqa: E402

HEADER = (
    "Image Id,Model,Prompt,Pic Num.,1. Missing Error-1.4 Hands,3. Configuration Error-3.2 Limbs,"
    "5. Proportion Error-5.3 Feet,Annotator\n"
)


def _dataset(tmp_path: Path, rows: str, images: int = 8) -> Path:
    (tmp_path / "annotations.csv").write_text(HEADER + rows, encoding="utf-8")
    for n in range(1, images + 1):
        p = tmp_path / "images" / "sdXL" / "person_jogging" / f"sdXL_jogging_{n:02d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path


def test_cells_are_parsed_leniently_and_annotators_averaged(tmp_path: Path) -> None:
    rows = (
        'sdxl_person jogging_01,sdxl,person jogging,1,"1/2a, 1/2b",1c/5c,,anno1\n'
        "sdxl_person jogging_01,sdxl,person jogging,1,,,1/2,anno2\n"
        "sdxl_person jogging_02,sdxl,person jogging,2,2/4 c,,,anno1\n"
        "sdxl_person jogging_03,sdxl,person jogging,3,x/y,,,anno1\n"
    )
    ds = load_dataset(_dataset(tmp_path, rows))
    one = ds.items["sdxl_person jogging_01"].label
    assert one.annotators == 2
    assert one.severity["hands"] == pytest.approx((0.2 + 0.5) / 2)
    assert one.severity["limbs"] == pytest.approx(1.0 / 2)  # "1c/5c": severity read once
    assert one.severity["feet"] == pytest.approx(0.5 / 2)  # no letter: counted as b, said so
    assert one.has_error == {"torso": False, "limbs": True, "feet": True, "hands": True, "face": False}
    assert one.visible["hands"] == 2 and one.visible["limbs"] == 5 and one.visible["torso"] is None
    assert ds.items["sdxl_person jogging_02"].label.severity["hands"] == pytest.approx(2.0)
    assert not ds.items["sdxl_person jogging_03"].label.has_error["hands"]
    text = "\n".join(ds.issues)
    assert "'1/2' has no severity letter" in text and "'x/y'" in text and "severity before the slash" not in text
    # images without a label row are reported, not silently dropped
    assert sum("no label row" in i for i in ds.issues) == 5


def test_sets_follow_the_documented_rule(tmp_path: Path) -> None:
    rows = "".join(f"sdxl_person jogging_{n:02d},sdxl,person jogging,{n},,,,anno1\n" for n in range(1, 9))
    ds = load_dataset(_dataset(tmp_path, rows))
    ids = [f"sdxl_person jogging_{n:02d}" for n in range(1, 9)]
    assert sets_of(ds, 4) == [tuple(ids[:4]), tuple(ids[4:])]
    assert sets_of(ds, 2) == [tuple(ids[i : i + 2]) for i in range(0, 8, 2)]


def test_a_group_that_fills_no_last_set_is_still_scanned_whole(tmp_path: Path) -> None:
    """Other labelled folders need not hold 8 images per generator x prompt: 6 images make one set
    of 4 and three of 2, and all 6 are scanned (sets of 2 and the per-image figures use them)."""
    rows = "".join(f"sdxl_person jogging_{n:02d},sdxl,person jogging,{n},,,,anno1\n" for n in range(1, 7))
    ds = load_dataset(_dataset(tmp_path, rows, images=6))
    ids = tuple(f"sdxl_person jogging_{n:02d}" for n in range(1, 7))
    assert groups_of(ds) == [ids]
    assert sets_of(ds, 4) == [ids[:4]] and sets_of(ds, 4, rest=True) == [ids[:4], ids[4:]]
    assert len(sets_of(ds, 2)) == 3
    folders = set_folders(ds)
    assert sorted(k for members in folders.values() for k, _ in members) == list(ids)
    assert len(folders) == 2


def test_a_folder_the_scripts_cannot_use_is_named_with_the_reason(tmp_path: Path) -> None:
    rows = "sdxl_person jogging_01,sdxl,person jogging,1,,,,anno1\n"
    with pytest.raises(LabelledDataError, match="no such folder"):
        load_dataset(tmp_path / "absent")
    with pytest.raises(LabelledDataError, match=r"no annotations\.csv"):
        load_dataset(tmp_path)
    (tmp_path / "annotations.csv").write_text("Id,Model\nx,y\n", encoding="utf-8")
    (tmp_path / "images").mkdir()
    with pytest.raises(LabelledDataError, match="no 'Image Id' column"):
        load_dataset(tmp_path)
    (tmp_path / "annotations.csv").write_text(HEADER + rows, encoding="utf-8")
    with pytest.raises(LabelledDataError, match="has a label row"):
        load_dataset(tmp_path)
    one_prompt = _dataset(tmp_path, rows)
    assert len(load_dataset(one_prompt).items) == 1
    with pytest.raises(LabelledDataError, match="at least 2"):
        load_dataset(one_prompt, min_prompts=2)


def test_the_benchmark_says_why_a_folder_cannot_be_used_and_exits_2(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "judgement.py"),
            "--data",
            str(tmp_path),
            "--work",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 2, res.stderr
    assert (
        res.stderr.strip()
        == f"error: {tmp_path}: no annotations.csv in it; see ../shared/data/README.md (anatomy_dev) for the layout"
    )
    assert not (tmp_path / "w").exists()  # nothing was scanned


@pytest.mark.shared_data
def test_the_dev_set_loads_whole(shared_data: Path) -> None:
    ds = load_dataset(shared_data / "anatomy_dev")
    assert len(ds.items) == 120 and len(ds.prompts) == 5 and len(ds.generators) == 3
    assert ds.items["sdxl_physician examining patient_08"].path.name == "sdXL_physician_018.jpg"
    assert sum(it.label.annotators == 2 for it in ds.items.values()) == 30
    assert len(sets_of(ds, 4)) == 30 and len(sets_of(ds, 2)) == 60


def test_shipped_prior_is_the_fitted_one_on_its_card() -> None:
    card = json.loads((REPO / "core" / "rank" / "prior_card.json").read_text())
    shipped = PriorWeights().model_dump()
    assert {k: v for k, v in shipped.items() if v} == card["shipped_weights"]
    assert card["leave_one_prompt_out"]["sets_of_4"]["sets"] == 30
