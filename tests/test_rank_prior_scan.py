"""The fitted prior through the real path: `bestshot scan --mode recommend` over two human-labelled AI
renders, then what proposal.json says. Its scores are the shipped weights (core/rank/prior_card.json)
on the library-standardised features, the part evidence of the stored anomaly report included; its
probabilities are those scores at the prior's held-out temperature; its reasons are the fitted
features that moved the winner most."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.rank.features import ImageSignals, base_features, summarise_anomaly_report
from core.rank.prior_fit import QUALITY_TIEBREAK
from core.rank.propose import PHRASES
from core.rank.settings import PriorWeights, RankSettings
from tests.helpers import bestshot, db_rows, write_config

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

ENABLED = ["phash", "hands", "pose", "face", "saliency", "quality", "anomalies", "crop"]
NAMES = ("dall_e3_jogging_01.png", "dall_e3_jogging_03.png")


def _sign(a: float | None, b: float | None) -> float:
    """z-score of `a` in a library of {a, b}: +-1 when they differ, 0 when equal or either is unknown."""
    if a is None or b is None or a == b:
        return 0.0
    return 1.0 if a > b else -1.0


def _raw(payloads: dict[str, Any]) -> dict[str, float | None]:
    """The ranking features recomputed from the stored sidecars (the anomaly report summarised)."""
    return base_features(
        ImageSignals(
            quality=payloads.get("quality"),
            face=payloads.get("face"),
            hands=payloads.get("hands"),
            pose=payloads.get("pose"),
            anomaly=summarise_anomaly_report(payloads["anomalies"]),
        )
    )


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
    weights = {k: v for k, v in PriorWeights().model_dump().items() if v and k != "temperature"}
    a, b = body["images"]
    raw = {i["name"]: _raw(payloads[i["image_id"]]) for i in (a, b)}
    signs = {
        me["name"]: {f: _sign(raw[me["name"]][f], raw[other["name"]][f]) for f in weights}
        for me, other in ((a, b), (b, a))
    }
    fitted = [f for f in weights if f not in QUALITY_TIEBREAK]
    assert fitted and any(signs[a["name"]][f] for f in fitted), "pick two renders the fitted features tell apart"
    for me in (a, b):
        expected = sum(w * signs[me["name"]][f] for f, w in weights.items())
        assert me["score"] == pytest.approx(expected, abs=2e-3), (me, raw)
    # the reasons are the features that moved the winner most (weight x z difference, z = +-1)
    contrib = {f: weights[f] * 2 * signs[a["name"]][f] for f in weights}
    found = sorted(
        ((c, PHRASES[f][0 if signs[a["name"]][f] > 0 else 1]) for f, c in contrib.items() if f in PHRASES),
        reverse=True,
    )
    expected_reasons = [t for c, t in found if c >= RankSettings().reason_min_contribution][:3]
    assert body["reasons"][: len(expected_reasons)] == expected_reasons, (body["reasons"], contrib)


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
