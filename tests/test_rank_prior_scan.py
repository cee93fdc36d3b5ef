"""The fitted prior through the real path: `bestshot scan --mode recommend` over two human-labelled AI
renders, then what proposal.json says. Its scores are the shipped weights (core/rank/prior_card.json)
on the library-standardised features, the part evidence of the stored anomaly report included; its
probabilities are those scores at the prior's held-out temperature; its reasons name the part
evidence when it moved the winner."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.anomaly.parts import part_scores
from core.rank.settings import PriorWeights
from tests.helpers import bestshot, db_rows, write_config

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

ENABLED = ["phash", "hands", "pose", "face", "saliency", "quality", "anomalies", "crop"]
NAMES = ("dall_e3_jogging_01.png", "dall_e3_jogging_03.png")


def _sign(a: float | None, b: float | None) -> float:
    """z-score of `a` in a library of {a, b}: +-1 when they differ, 0 when equal or either is unknown."""
    if a is None or b is None or a == b:
        return 0.0
    return 1.0 if a > b else -1.0


def _raw(quality: dict[str, Any], report: dict[str, Any]) -> dict[str, float | None]:
    def log1p(v: float | None) -> float | None:
        return None if v is None else math.log1p(max(v, 0.0))

    return {
        "anomaly_limbs": part_scores(report)["limbs"].score,
        "noise": quality.get("noise_sigma"),
        "brisque": quality.get("brisque"),
        "sharpness_log": log1p(quality.get("sharpness")),
        "subject_sharpness_log": log1p(quality.get("subject_sharpness")),
    }


@pytest.fixture(scope="module")
def scanned(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    src = shared_data / "anatomy_dev" / "images" / "dall-e3" / "person_jogging"
    root = tmp_path_factory.mktemp("prior") / "root"
    (root / "inbox" / "set").mkdir(parents=True)
    for n in NAMES:
        shutil.copy(src / n, root / "inbox" / "set" / n)
    write_config(root, {"extractors": {"enabled": ENABLED}})  # the shipped prior, as a new user has it
    bestshot("scan", "--mode", "recommend", root=root, timeout=900)
    (found,) = (root / "raw").glob("set_*/proposal.json")
    body: dict[str, Any] = json.loads(found.read_text())
    payloads: dict[str, dict[str, Any]] = {}
    for sha, ext, payload in db_rows(root, "SELECT sha256, extractor, payload FROM sidecars ORDER BY version"):
        if payload is not None:
            payloads.setdefault(sha, {})[ext] = json.loads(payload)
    return body, payloads


def test_proposal_scores_are_the_fitted_prior_on_the_stored_evidence(
    scanned: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    body, payloads = scanned
    assert body["source"] == "prior"
    weights = PriorWeights()
    a, b = body["images"]
    raw = {i["name"]: _raw(payloads[i["image_id"]]["quality"], payloads[i["image_id"]]["anomalies"]) for i in (a, b)}
    assert raw[a["name"]]["anomaly_limbs"] != raw[b["name"]]["anomaly_limbs"], (
        "pick two renders the limb evidence tells apart"
    )
    for me, other in ((a, b), (b, a)):
        expected = sum(getattr(weights, f) * _sign(raw[me["name"]][f], raw[other["name"]][f]) for f in raw[me["name"]])
        assert me["score"] == pytest.approx(expected, abs=2e-3), (me, raw)
    # the fitted part-evidence weight is what separates them most, and the reasons say so
    limbs_lower = (
        raw[body["winner"]]["anomaly_limbs"]
        < raw[b["name"] if body["winner"] == a["name"] else a["name"]]["anomaly_limbs"]
    )
    assert ("less likely limb errors" in body["reasons"]) == limbs_lower, body["reasons"]


def test_proposal_confidence_is_at_the_prior_temperature(scanned: tuple[dict[str, Any], dict[str, Any]]) -> None:
    body, _ = scanned
    t = PriorWeights().temperature
    scores = [i["score"] for i in body["images"]]
    top = max(scores)
    z = [math.exp((s - top) / t) for s in scores]
    for img, e in zip(body["images"], z, strict=True):
        assert img["probability"] == pytest.approx(e / sum(z), abs=2e-3)
    assert body["winner"] == body["images"][0]["name"] and scores[0] == top
    assert body["confidence"] == pytest.approx(body["images"][0]["probability"], abs=1e-4)
    # the prior's held-out skill is close to chance, and it says so: the set is routed to the user
    assert body["confidence"] < 0.6 and body["uncertain"]
