"""Session lines: the user's schema, the JSON Schema file, parse errors with line numbers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest

from core.labels.log_input import parse_lines
from core.labels.session import SessionLine, SessionLineError, parse_line, session_file_name
from core.sidecar_types import Box

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "core" / "schemas" / "session_line.schema.json"
TS = datetime(2025, 3, 4, 10, 20, 30, 123000, tzinfo=UTC)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def cropped_line() -> SessionLine:
    return SessionLine(
        ts=TS,
        set_id="set_000042",
        images=("a.png", "b.png", "c.png"),
        winner="b.png",
        needs_crop=True,
        delete=False,
        anomaly_tags=("extra_fingers", "Rouge"),
        crop_box=Box(100, 200, 640, 960),
        bestshot={"v": 2, "source": "observed", "closed": "all_placed", "revision": 0, "deleted": ["c.png"]},
    )


def valid_dict() -> dict[str, object]:
    return {
        "ts": "2025-03-04T10:20:30+01:00",
        "set_id": "set_1",
        "images": ["a.png", "b.png"],
        "winner": "a.png",
        "needs_crop": False,
        "delete": False,
        "crop_box": None,
        "anomaly_tags": [],
    }


def test_produced_line_is_one_line_in_schema_order_and_validates(validator: jsonschema.Draft202012Validator) -> None:
    text = cropped_line().to_json_line()
    assert "\n" not in text
    data = json.loads(text)
    validator.validate(data)
    assert list(data) == [
        "ts", "set_id", "images", "winner", "needs_crop", "delete", "crop_box", "anomaly_tags", "bestshot",
    ]  # fmt: skip
    assert data["crop_box"] == {"x": 100, "y": 200, "w": 640, "h": 960}
    assert data["ts"] == "2025-03-04T10:20:30.123+00:00"


def test_line_without_crop_is_the_plans_line_key_for_key(validator: jsonschema.Draft202012Validator) -> None:
    line = parse_line(json.dumps(valid_dict()), 1)
    data = json.loads(line.to_json_line())
    validator.validate(data)
    assert list(data) == ["ts", "set_id", "images", "winner", "needs_crop", "delete", "crop_box", "anomaly_tags"]
    assert data["crop_box"] is None and data["delete"] is False


# The user's plan: {"ts", "set_id", "images", "winner", "needs_crop", "delete": false, "crop_box", "anomaly_tags"}
PLAN_LINE = (
    '{"ts": "2026-11-24T10:00:01+00:00", "set_id": "set_000123", "images": ["a.png", "b.png", "c.png"], '
    '"winner": "b.png", "needs_crop": false, "delete": false, "crop_box": null, "anomaly_tags": []}'
)


def test_the_plans_example_line_is_read(validator: jsonschema.Draft202012Validator) -> None:
    validator.validate(json.loads(PLAN_LINE))
    line = parse_line(PLAN_LINE, 1)
    assert line.delete is False and line.deleted == () and line.crop_box is None and line.winner == "b.png"
    thrown = parse_line(
        PLAN_LINE.replace('"winner": "b.png"', '"winner": null').replace('"delete": false', '"delete": true'), 1
    )
    assert thrown.delete is True and thrown.deleted == ("a.png", "b.png", "c.png")
    naive = parse_line(PLAN_LINE.replace("+00:00", ""), 1)  # local time, as datetime.now().isoformat() writes
    assert naive.ts.utcoffset() is not None and naive.ts.replace(tzinfo=None) == datetime(2026, 11, 24, 10, 0, 1)


def test_earlier_bestshot_lines_are_still_read_and_mean_the_same(validator: jsonschema.Draft202012Validator) -> None:
    """v1 wrote `delete` as a list of names and left crop_box out: same content as the v2 line."""
    old = {**valid_dict(), "delete": ["b.png"], "bestshot": {"v": 1, "source": "observed", "revision": 0}}
    del old["crop_box"]
    validator.validate(old)
    v1 = parse_line(json.dumps(old), 1)
    assert v1.delete is False and v1.deleted == ("b.png",)
    v2 = parse_line(v1.to_json_line(), 1)
    assert json.loads(v1.to_json_line())["delete"] is False and v2.content_key() == v1.content_key()
    gone = parse_line(json.dumps({**old, "winner": None, "delete": ["a.png", "b.png"]}), 1)
    assert gone.delete is True and gone.deleted == ("a.png", "b.png")


def test_round_trip_through_text() -> None:
    line = cropped_line()
    again = parse_line(line.to_json_line() + "\n", 7)
    assert again == line
    assert again.content_key() == line.content_key()


def test_content_key_ignores_when_and_why_but_not_what() -> None:
    line = cropped_line()
    later = SessionLine(
        **{**line.__dict__, "ts": TS + timedelta(hours=1), "bestshot": {"revision": 3, "deleted": ["c.png"]}}
    )
    assert later.content_key() == line.content_key()
    other = SessionLine(**{**line.__dict__, "winner": "a.png", "crop_box": None, "needs_crop": False})
    assert other.content_key() != line.content_key()


def test_timezones_accepted_and_kept() -> None:
    for ts in ("2025-03-04T10:20:30Z", "2025-03-04T10:20:30.5-07:00", "2025-03-04T10:20+05:30"):
        line = parse_line(json.dumps({**valid_dict(), "ts": ts}), 1)
        assert line.ts.utcoffset() is not None
        assert parse_line(line.to_json_line(), 1).ts == line.ts
    shifted = parse_line(json.dumps({**valid_dict(), "ts": "2025-03-04T10:20:30-07:00"}), 1)
    assert shifted.ts.utcoffset() == timedelta(hours=-7)
    assert shifted.ts.tzinfo == timezone(timedelta(hours=-7))


def test_other_tools_namespaced_keys_are_kept() -> None:
    data = {**valid_dict(), "x-webtool": {"session": 9, "zoom": [1, 2]}}
    line = parse_line(json.dumps(data), 1)
    assert line.extensions == {"x-webtool": {"session": 9, "zoom": [1, 2]}}
    assert json.loads(line.to_json_line())["x-webtool"] == {"session": 9, "zoom": [1, 2]}


# (mutation of a valid line, words expected in the reason, also rejected by the JSON Schema alone)
INVALID = [
    (lambda d: d.pop("winner"), "winner", True),
    (lambda d: d.update(winner=3), "winner", True),
    (lambda d: d.update(needs_crop="yes"), "needs_crop", True),
    (lambda d: d.update(images=[]), "images", True),
    (lambda d: d.update(images="a.png"), "images", True),
    (lambda d: d.update(delete=[1]), "delete", True),
    (lambda d: d.update(anomaly_tags="bad_hands"), "anomaly_tags", True),
    (lambda d: d.update(extra=1), "extra", True),
    (lambda d: d.update(delete="no"), "delete", True),
    (lambda d: d.pop("delete"), "delete", True),
    (lambda d: d.update(ts="yesterday"), "ts", True),
    (lambda d: d.update(set_id=17), "set_id", True),
    (lambda d: d.update(images=["raw/a.png", "b.png"], winner=None, delete=[]), "images", True),
    (lambda d: d.update(crop_box={"x": 0, "y": 0, "w": 10, "h": 10}), "needs_crop", True),
    (lambda d: d.update(needs_crop=True, crop_box={"x": 0, "y": 0, "w": 0, "h": 10}), "crop_box", True),
    (lambda d: d.update(needs_crop=True, crop_box={"x": 0, "y": 0, "w": 5}), "crop_box", True),
    (lambda d: d.update(bestshot={"revision": -1}), "bestshot", True),
    (lambda d: d.update(winner="z.png"), "winner", False),
    (lambda d: d.update(delete=["z.png"]), "delete", False),
    (lambda d: d.update(delete=["a.png"]), "winner", False),
    (lambda d: d.update(bestshot={"deleted": ["z.png"]}), "delete", False),
    (lambda d: d.update(ts="2025-02-30T10:00:00Z"), "ts", False),
]


@pytest.mark.parametrize(("mutate", "word", "schema_rejects"), INVALID)
def test_invalid_lines_are_rejected_with_line_number_and_reason(
    validator: jsonschema.Draft202012Validator, mutate, word: str, schema_rejects: bool
) -> None:
    data = valid_dict()
    mutate(data)
    with pytest.raises(SessionLineError) as info:
        parse_line(json.dumps(data), 12)
    assert info.value.lineno == 12
    assert word in info.value.reason
    assert str(info.value).startswith("line 12: ")
    assert (not validator.is_valid(data)) == schema_rejects


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("", "empty"),
        ("{not json", "JSON"),
        ("[1, 2]", "object"),
        (json.dumps(valid_dict())[:-1] + ', "crop_box": {"x": NaN, "y": 0, "w": 1, "h": 1}}', "NaN"),
    ],
)
def test_unparseable_text(text: str, word: str) -> None:
    with pytest.raises(SessionLineError) as info:
        parse_line(text, 3)
    assert info.value.lineno == 3 and word in info.value.reason


def test_constructing_an_inconsistent_line_fails() -> None:
    with pytest.raises(SessionLineError, match="non-finite"):
        SessionLine(TS, "s", ("a",), "a", True, False, (), crop_box=Box(math.nan, 0, 1, 1))
    with pytest.raises(SessionLineError, match="timezone"):
        SessionLine(datetime(2025, 1, 1), "s", ("a",), None, False, False, ())


def test_parse_lines_keeps_valid_and_reports_invalid_by_number() -> None:
    good = json.dumps(valid_dict())
    lines = [good + "\n", "\n", '{"ts": 1}\n', good.replace('"a.png", "b.png"', '"a.png", "a.png"'), good]
    valid, errors = parse_lines(lines)
    assert len(valid) == 2
    assert [n for n, _ in errors] == [3, 4]
    assert "ts" in errors[0][1] or "required" in errors[0][1]
    assert "unique" in errors[1][1] or "duplicate" in errors[1][1]


def test_session_file_name() -> None:
    a0 = parse_line(json.dumps({**valid_dict(), "set_id": "s1"}), 1)
    assert session_file_name(a0.ts) == "2025-03-04__session.jsonl"
