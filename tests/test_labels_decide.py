"""The decision rule: winner, losers, closure, corrections and idempotence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from core.labels.crop_recovery import CropMatch
from core.labels.decide import (
    CropState,
    Decision,
    MemberState,
    SetState,
    Undecided,
    decide,
    next_line,
)
from core.labels.session import SessionLine, parse_line
from core.labels.settings import LabelSettings
from core.sidecar_types import Box

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "core" / "schemas" / "session_line.schema.json").read_text()
)
T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
S = LabelSettings(close_after_other_sets=2, close_after_seconds=600)
NAMES = ("a.png", "b.png", "c.png", "d.png")


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def members(**where: tuple[str, float | None] | str) -> tuple[MemberState, ...]:
    """members(a=("approved", 10), b="raw") -> four members a-d, unnamed ones in raw."""
    out = []
    for name in NAMES:
        key = name.split(".")[0]
        spec = where.get(key, "raw")
        loc, at = (spec, None) if isinstance(spec, str) else spec
        moved = t(at) if at is not None else None
        out.append(MemberState(sha256=key * 64, name=name, location=loc, moved_at=moved))  # type: ignore[arg-type]
    return tuple(out)


def written(line: SessionLine | None) -> SessionLine:
    """Every produced line must be valid JSON in the schema and parse back equal."""
    assert line is not None
    text = line.to_json_line()
    jsonschema.validate(json.loads(text), SCHEMA, cls=jsonschema.Draft202012Validator)
    assert parse_line(text, 1) == line
    return line


def test_winner_to_approved_losers_rejected_closes_at_once() -> None:
    state = SetState("set_1", members(a=("approved", 10), b=("rejected", 12), c=("rejected", 13), d=("rejected", 14)))
    d = decide(state, S, now=t(15))
    assert isinstance(d, Decision)
    assert d.closed == "all_placed" and d.ts == t(14)
    line = written(next_line(state, None, S, now=t(15)))
    assert line.winner == "a.png" and not line.needs_crop and line.crop_box is None
    assert line.deleted == ("b.png", "c.png", "d.png") and line.delete is False  # a winner was kept
    assert line.bestshot["losers"] == ["b.png", "c.png", "d.png"] and line.revision == 0
    assert d.pairs() == [("a" * 64, "b" * 64), ("a" * 64, "c" * 64), ("a" * 64, "d" * 64)]


def test_same_observation_writes_nothing_new() -> None:
    state = SetState("set_1", members(a=("approved", 10), b=("rejected", 12), c=("trash", 13), d=("missing", 14)))
    first = written(next_line(state, None, S, now=t(15)))
    assert next_line(state, first, S, now=t(15)) is None
    assert next_line(state, first, S, now=t(10_000)) is None  # time passing alone changes nothing
    # A restart that re-reads the line from disk compares equal as well.
    assert next_line(state, parse_line(first.to_json_line(), 1), S, now=t(20)) is None


def test_trash_and_missing_count_as_deleted() -> None:
    state = SetState("set_1", members(a=("to_crop", 5), b=("trash", 6), c=("missing", 7), d=("rejected", 8)))
    line = written(next_line(state, None, S, now=t(9)))
    assert line.deleted == ("b.png", "c.png", "d.png")
    assert line.bestshot["locations"]["b.png"] == "trash"


def test_left_behind_waits_then_closes_when_user_moves_on() -> None:
    state = SetState("set_1", members(a=("approved", 100)))
    waiting = decide(state, S, now=t(101))
    assert isinstance(waiting, Undecided) and waiting.reason == "waiting" and waiting.closes_at == t(700)
    assert next_line(state, None, S, now=t(101)) is None
    # One later set is not enough (the user may come back); a set acted on earlier does not count.
    one = SetState("set_1", state.members, other_sets_last_action={"set_0": t(50), "set_2": t(150)})
    assert isinstance(decide(one, S, now=t(151)), Undecided)
    two = SetState("set_1", state.members, other_sets_last_action={"set_0": t(50), "set_2": t(150), "set_3": t(170)})
    d = decide(two, S, now=t(171))
    assert isinstance(d, Decision) and d.closed == "moved_on" and d.ts == t(170)
    line = written(d.to_line())
    assert line.winner == "a.png" and line.deleted == ()
    assert line.bestshot["left_behind"] == ["b.png", "c.png", "d.png"]
    assert d.pairs() == [("a" * 64, k * 64) for k in "bcd"]  # left behind still lose to the winner


def test_timeout_closes_the_last_set_of_a_session() -> None:
    state = SetState("set_9", members(a=("rejected", 100), b=("to_crop", 130)))
    assert isinstance(decide(state, S, now=t(729)), Undecided)
    d = decide(state, S, now=t(731))
    assert isinstance(d, Decision) and d.closed == "timeout" and d.ts == t(730)
    line = written(d.to_line())
    assert line.winner == "b.png" and line.needs_crop and line.deleted == ("a.png",)


def test_closure_rules_can_be_switched_off() -> None:
    state = SetState("s", members(a=("approved", 1)), other_sets_last_action={"x": t(5), "y": t(6)})
    never = LabelSettings(close_after_other_sets=None, close_after_seconds=None)
    result = decide(state, never, now=t(10**6))
    assert isinstance(result, Undecided) and result.closes_at is None


def test_delete_only_set_is_a_decision_without_pairs() -> None:
    state = SetState("set_1", members(**{k: ("rejected", i) for i, k in enumerate("abcd")}))
    d = decide(state, S, now=t(5))
    assert isinstance(d, Decision) and d.winner is None and d.pairs() == []
    line = written(d.to_line())
    assert line.winner is None and line.deleted == NAMES and not line.needs_crop
    assert line.delete is True  # the plan's boolean: the set was thrown away


def test_untouched_set_is_not_decided_however_old() -> None:
    state = SetState("set_1", members(), other_sets_last_action={"a": t(1), "b": t(2), "c": t(3)})
    result = decide(state, S, now=t(10**7))
    assert isinstance(result, Undecided) and result.reason == "no_action"
    assert next_line(state, None, S, now=t(10**7)) is None


BOX = Box(100, 200, 640, 960)
W, H = 1024, 1536


def crop_state(sha: str, at: float) -> CropState:
    match = CropMatch(
        BOX, quality=0.9991, exact=False, scale=(0.5, 0.5), aspect_error=2e-4, method="ecc", source_size=(W, H)
    )
    return CropState(source_sha256=sha, file="crop_b.png", match=match, observed_at=t(at))


def test_to_crop_then_cropped_supersedes_with_the_box() -> None:
    placed = members(a=("rejected", 10), b=("to_crop", 11), c=("rejected", 12), d=("rejected", 13))
    first = written(next_line(SetState("set_1", placed), None, S, now=t(14)))
    assert first.needs_crop and first.crop_box is None and first.winner == "b.png"
    cropped = SetState("set_1", placed, crops=(crop_state("b" * 64, 300),))
    second = written(next_line(cropped, first, S, now=t(301)))
    assert second.crop_box == Box(100, 200, 640, 960) and second.winner == "b.png"
    assert second.revision == 1 and second.bestshot["supersedes"] == "2025-05-01T09:00:13.000+00:00"
    assert second.bestshot["crop"]["method"] == "ecc"
    assert next_line(cropped, second, S, now=t(400)) is None


def test_crop_proves_the_choice_when_the_tool_consumed_the_to_crop_file() -> None:
    placed = members(a=("rejected", 10), b=("missing", 400), c=("rejected", 12), d=("rejected", 13))
    line = written(next_line(SetState("set_1", placed, crops=(crop_state("b" * 64, 300),)), None, S, now=t(401)))
    assert line.winner == "b.png" and line.crop_box is not None and line.deleted == ("a.png", "c.png", "d.png")
    # ...but a source rejected after its crop appeared is a rejection.
    rejected = members(a=("rejected", 10), b=("rejected", 400), c=("rejected", 12), d=("rejected", 13))
    line = written(next_line(SetState("set_1", rejected, crops=(crop_state("b" * 64, 300),)), None, S, now=t(401)))
    assert line.winner is None and "b.png" in line.deleted and line.delete is True


def test_correction_choosing_differently_supersedes_and_keeps_history() -> None:
    first_state = SetState(
        "set_1", members(a=("approved", 10), b=("rejected", 11), c=("rejected", 12), d=("rejected", 13))
    )
    first = written(next_line(first_state, None, S, now=t(14)))
    # Later the user moves a back to raw and b from rejected to approved.
    second_state = SetState(
        "set_1", members(a=("raw", 500), b=("approved", 510), c=("rejected", 12), d=("rejected", 13))
    )
    assert next_line(second_state, first, S, now=t(520)) is None  # a is pending again: wait
    second = written(next_line(second_state, first, S, now=t(1200)))
    assert second.winner == "b.png" and second.deleted == ("c.png", "d.png")
    assert second.bestshot["left_behind"] == ["a.png"] and second.revision == 1
    assert second.bestshot["supersedes"] == "2025-05-01T09:00:13.000+00:00"
    assert next_line(second_state, second, S, now=t(5000)) is None


def test_moving_everything_back_retracts_once() -> None:
    first = written(
        next_line(
            SetState("s", members(a=("approved", 1), b=("rejected", 2), c=("rejected", 3), d=("rejected", 4))),
            None,
            S,
            now=t(5),
        )
    )
    back = SetState("s", members(a=("raw", 60), b=("raw", 61), c=("raw", 62), d=("raw", 63)))
    retraction = written(next_line(back, first, S, now=t(64)))
    assert retraction.retracted and retraction.winner is None and retraction.deleted == ()
    assert retraction.revision == 1 and retraction.ts == t(63)
    assert next_line(back, retraction, S, now=t(99)) is None
    # Deciding again after a retraction is new again, even if it repeats the first decision.
    again = SetState("s", members(a=("approved", 70), b=("rejected", 71), c=("rejected", 72), d=("rejected", 73)))
    third = written(next_line(again, retraction, S, now=t(74)))
    assert third.winner == "a.png" and third.revision == 2


def test_a_logged_decision_is_not_retracted_by_unmoved_files() -> None:
    logged = parse_line(
        json.dumps(
            {
                "ts": "2025-05-01T09:00:00Z",
                "set_id": "s",
                "images": list(NAMES),
                "winner": "c.png",
                "needs_crop": False,
                "delete": ["a.png"],
                "anomaly_tags": [],
            }
        ),
        1,
    )
    assert next_line(SetState("s", members()), logged, S, now=t(10)) is None


def test_two_chosen_latest_wins_the_other_is_neither_loser_nor_deleted() -> None:
    state = SetState("s", members(a=("approved", 50), b=("approved", 20), c=("rejected", 30), d=("rejected", 31)))
    d = decide(state, S, now=t(60))
    assert isinstance(d, Decision) and d.winner is not None and d.winner.name == "a.png"
    line = written(d.to_line())
    assert line.bestshot["also_chosen"] == ["b.png"] and "b.png" not in line.bestshot["losers"]
    assert ("a" * 64, "b" * 64) not in d.pairs()


def test_tags_from_finder_and_subfolders_reach_the_line() -> None:
    ms = list(members(a=("approved", 1), c=("rejected", 3), d=("rejected", 4), b=("rejected", 2)))
    ms[1] = MemberState("b" * 64, "b.png", "rejected", t(2), tags=("extra_fingers", "Red"))
    ms[2] = MemberState("c" * 64, "c.png", "rejected", t(3), tags=("bad feet ✗", "extra_fingers"))
    line = written(next_line(SetState("s", tuple(ms)), None, S, now=t(5)))
    assert line.anomaly_tags == ("extra_fingers", "Red", "bad feet ✗")
    assert line.bestshot["image_tags"] == {"b.png": ["extra_fingers", "Red"], "c.png": ["bad feet ✗", "extra_fingers"]}
    # A tag added later is news: the line is superseded.
    ms[3] = MemberState("d" * 64, "d.png", "rejected", t(4), tags=("limbs",))
    assert written(next_line(SetState("s", tuple(ms)), line, S, now=t(6))).anomaly_tags[-1] == "limbs"


def test_unknown_location_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown location"):
        MemberState("a" * 64, "a.png", "desktop", None)  # type: ignore[arg-type]


def test_leaving_the_root_after_the_decision_keeps_the_place_it_was_decided_in() -> None:
    from core.labels.decide import kept_place

    placed = SetState("s", members(a=("approved", 10), b=("rejected", 11), c=("rejected", 12), d=("rejected", 13)))
    first = written(next_line(placed, None, S, now=t(14)))
    # The winner goes to the user's final folder, b to the Trash: each keeps its decided place.
    gone = {"a.png": kept_place(first, "a.png"), "b.png": kept_place(first, "b.png")}
    assert gone == {"a.png": "approved", "b.png": "rejected"}
    after = SetState("s", members(a=(gone["a.png"], 10), b=(gone["b.png"], 11), c=("rejected", 12), d=("rejected", 13)))
    assert next_line(after, first, S, now=t(99)) is None
    # Before any decision, or after a retraction, leaving the root is a delete (no kept place).
    assert kept_place(None, "a.png") is None
    retracted = SessionLine(**{**first.__dict__, "bestshot": {**first.bestshot, "retracted": True}})
    assert kept_place(retracted, "a.png") is None
    # A line from another tool has no locations: its roles say where the files were.
    logged = parse_line(
        '{"ts":"2025-05-01T09:00:00Z","set_id":"s","images":["a.png","b.png","c.png"],"winner":"b.png",'
        '"needs_crop":true,"delete":false,"crop_box":null,"anomaly_tags":[]}',
        1,
    )
    assert [kept_place(logged, n) for n in ("a.png", "b.png", "c.png")] == ["raw", "to_crop", "raw"]
