"""The review page's pure logic: exact-aspect crop boxes, region labels, the session field."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.anomaly.model import Anomaly, AnomalyReport
from core.labels.session import SessionLineError, parse_line
from core.review import cropbox
from core.review.regions import RegionLabel, RegionLabelError, hand_overrides, merge, parse_request, split_report
from core.sidecar_types import Box

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "core" / "schemas" / "session_line.schema.json").read_text())
OLD_LINE = (
    '{"ts":"2026-11-24T10:00:01.123+00:00","set_id":"set_1","images":["a.png","b.png"],"winner":"b.png",'
    '"needs_crop":false,"delete":["a.png"],"anomaly_tags":[]}'
)


@given(
    st.integers(1, 3000),
    st.integers(1, 3000),
    st.floats(-500, 3500),
    st.floats(-500, 3500),
    st.floats(0, 4000),
    st.floats(0, 4000),
)
def test_snapped_box_is_exact_whole_and_inside(width: int, height: int, x: float, y: float, w: float, h: float) -> None:
    b = cropbox.snap(width, height, x, y, w, h)
    assert cropbox.check(width, height, b) == b
    assert b.w * height == b.h * width


def test_check_refuses_boxes_off_aspect_or_outside() -> None:
    with pytest.raises(cropbox.CropBoxError, match="aspect"):
        cropbox.check(1024, 1536, cropbox.IntBox(0, 0, 100, 100))
    with pytest.raises(cropbox.CropBoxError, match="inside"):
        cropbox.check(1024, 1536, cropbox.IntBox(900, 0, 200, 300))
    with pytest.raises(cropbox.CropBoxError, match="integers"):
        cropbox.parse(1024, 1536, {"x": 0.5, "y": 0, "w": 2, "h": 3})
    assert cropbox.parse(1024, 1536, {"x": 2, "y": 3, "w": 2, "h": 3}) == cropbox.IntBox(2, 3, 2, 3)


def _label(**kw: object) -> dict[str, object]:
    d: dict[str, object] = {
        "image": "a.png",
        "box": {"x": 10, "y": 10, "w": 40, "h": 40},
        "tag": "extra_fingers",
        "label": "anomaly",
        "origin": "drawn",
    }
    d.update(kw)
    return d


def test_region_labels_from_requests_are_checked() -> None:
    sizes = {"a.png": (100, 150)}
    (lab,) = parse_request([_label()], sizes)
    assert lab.box == Box(10, 10, 40, 40)
    for bad in (
        _label(image="b.png"),
        _label(box={"x": 90, "y": 0, "w": 20, "h": 20}),
        _label(tag="../x"),
        _label(label="maybe"),
        _label(label="not_anomaly"),  # drawn boxes mark misses only
        {**_label(), "extra": 1},
    ):
        with pytest.raises(RegionLabelError):
            parse_request([bad], sizes)


def test_session_field_is_optional_validated_and_round_trips() -> None:
    old = parse_line(OLD_LINE, 1)
    assert old.region_labels == () and "region_labels" not in old.to_dict()["bestshot"]
    # An earlier line is read as the same decision and written in the plan's schema.
    assert parse_line(old.to_json_line(), 1).content_key() == old.content_key()
    new = json.loads(OLD_LINE)
    new["region_labels"] = [_label(image="b.png", label="not_anomaly", origin="flagged")]
    jsonschema.validate(new, SCHEMA)
    line = parse_line(json.dumps(new), 1)
    assert line.to_dict()["bestshot"]["region_labels"] == new["region_labels"]  # bestshot's own, not the plan's
    assert "region_labels" not in line.to_dict() and parse_line(line.to_json_line(), 1) == line
    assert line.content_key() == old.content_key()  # labels are not a different decision
    with pytest.raises(SessionLineError, match="region_labels"):
        parse_line(json.dumps({**new, "region_labels": [_label(image="zzz.png")]}), 1)
    with pytest.raises(SessionLineError):
        parse_line(json.dumps({**new, "region_labels": [_label(box={"x": 1.5, "y": 0, "w": 2, "h": 2})]}), 1)


def test_labels_decide_flagged_regions_and_hands() -> None:
    hand = Anomaly("extra_fingers", Box(10, 10, 40, 40), 0.8, {"measurement": "finger_count"})
    other = Anomaly("long_hand", Box(200, 200, 40, 40), 0.7, {"measurement": "hand_length"})
    report = AnomalyReport(300, 300, anomalies=[hand, other])
    not_one = RegionLabel("a.png", Box(12, 11, 38, 40), "extra_fingers", "not_anomaly", "flagged")
    labelled, rest = split_report(report, [not_one])
    assert labelled == [(hand, False)] and rest.anomalies == [other]
    hands = [Box(0, 0, 60, 60), Box(190, 190, 60, 60), Box(100, 0, 50, 50)]
    missed = RegionLabel("a.png", Box(200, 200, 30, 30), "long_hand", "anomaly", "drawn")
    assert hand_overrides(hands, [not_one, missed], [None, None, None]) == [False, True, None]
    later = RegionLabel("a.png", Box(10, 10, 40, 40), "extra_fingers", "anomaly", "flagged")
    assert merge([not_one], [later]) == (later,)
