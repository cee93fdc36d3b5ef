"""The learned hand model (core.anomaly.hand_model): its examples from the user's decisions, its
training, and the model in force in the `anomalies` extractor.

Examples: every hand of every decided image with a representation (region descriptors from the
`regions` extractor, which needs no model weights; the hand_clip embedding appended when the CLIP
weights exist) whose label the decision gives (kept in an approved image or inside the user's
crop; cut away by the crop; the only hand of an image rejected with a hand tag). Trained with every training run, it is put in force only
once it clears its own gate (enough of both labels, held-out AUC); until then `bestshot status`
says why not. Models are kept under models/hands/<version>.json; a new one re-analyses the
images of undecided sets, as a new calibration does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection

from core.anomaly.hand_model import HandExample, HandModel, HandModelError, fit_hand_model, hand_labels
from core.config import Config
from core.extractors.analysis import AnomaliesExtractor, hand_representations
from core.review.regions import hand_overrides
from core.sidecar_types import hands_from_payload
from daemon.anomaly.learning_data import DecidedImage, decided_images, reanalyse_open_sets
from daemon.context import Ctx
from daemon.extractors.sidecar_store import latest_payload, stored_result
from daemon.store import records
from daemon.store.learned_state import HAND_MODEL_KEY, HAND_STATUS_KEY

log = logging.getLogger(__name__)
STATE_KEY = HAND_MODEL_KEY
STATUS_KEY = HAND_STATUS_KEY


def hand_examples(
    ctx: Ctx, conn: Connection, decided: Sequence[DecidedImage] | None = None
) -> tuple[list[HandExample], str | None]:
    """Labelled hand vectors from the user's decisions, and the representation they share
    (`hand_representations`: region descriptors, CLIP crop embeddings, or both): the one most
    examples have, the richer one on a tie, since vectors of different kinds cannot be mixed."""
    found: dict[str, list[HandExample]] = {}
    pad = ctx.cfg.anomaly.hand_box_pad
    for img in decided if decided is not None else decided_images(conn):
        hands = latest_payload(conn, img.sha256, "hands")
        if hands is None:
            continue
        reps = hand_representations(
            stored_result(ctx.cfg, conn, img.sha256, "regions"), stored_result(ctx.cfg, conn, img.sha256, "hand_clip")
        )
        boxes = [h.box(pad) for h in hands_from_payload(hands)]
        labels = hand_labels(boxes, img.role, img.crop_box, img.tags, ctx.cfg.anomaly.calibration)
        labels = hand_overrides(boxes, img.regions, labels)  # the review page says which hand
        for rep, vectors in reps.items():
            if vectors.shape[0] != len(boxes):
                continue
            found.setdefault(rep, []).extend(
                HandExample(img.set_id, vectors[i], lab) for i, lab in enumerate(labels) if lab is not None
            )
    found = {rep: ex for rep, ex in found.items() if ex}
    if not found:
        return [], None
    rep = max(found, key=lambda r: (len(found[r]), len(r)))
    return found[rep], rep


def models_dir(cfg: Config) -> Path:
    return cfg.path("models") / "hands"


def learn_hand_model(ctx: Ctx, decided: Sequence[DecidedImage] | None = None) -> HandModel | None:
    """Train on all decisions so far (`decided`, when the caller already read them); the model
    goes in force only when it clears its gate."""
    with ctx.store.read() as conn:
        examples, emb_model = hand_examples(ctx, conn, decided)
    if emb_model is None:
        _not_trained(ctx, "no decided image has hand descriptors or embeddings yet (regions or hand_clip sidecars)")
        return None
    try:
        model = fit_hand_model(examples, ctx.cfg.anomaly.hand_model, emb_model, datetime.now(UTC))
    except HandModelError as e:
        _not_trained(ctx, e.reason)
        return None
    models_dir(ctx.cfg).mkdir(parents=True, exist_ok=True)
    target = models_dir(ctx.cfg) / f"{model.version}.json"
    if not target.exists():
        model.save(target)
    with ctx.store.write() as conn:
        previous = records.get_state(conn, STATE_KEY)
        records.put_state(conn, STATE_KEY, model.version)
        records.put_state(
            conn,
            STATUS_KEY,
            f"in force: {model.version}, held-out AUC {model.cv_auc:.3f} on "
            f"{model.positives} cut and {model.negatives} kept hands",
        )
        if model.version != previous:
            n = reanalyse_open_sets(ctx, conn)
            log.info("re-analysing %d images of undecided sets with hand model %s", n, model.version)
    _use(ctx, model)
    log.info(
        "hand model %s: held-out AUC %.3f (%d cut, %d kept hands)",
        model.version,
        model.cv_auc,
        model.positives,
        model.negatives,
    )
    return model


def _not_trained(ctx: Ctx, reason: str) -> None:
    """The model in force (if any) stays; status says why no new one was adopted."""
    log.info("hand model not trained: %s", reason)
    with ctx.store.write() as conn:
        kept = records.get_state(conn, STATE_KEY)
        records.put_state(
            conn,
            STATUS_KEY,
            f"in force: {kept}, kept; the new fit was refused: {reason}" if kept else f"not trained: {reason}",
        )


def hand_model_in_force(cfg: Config, conn: Connection) -> HandModel | None:
    version = records.get_state(conn, STATE_KEY)
    if not version:
        return None
    path = models_dir(cfg) / f"{version}.json"
    try:
        return HandModel.load(path)
    except (OSError, HandModelError, ValueError) as e:
        log.error("hand model %s unreadable (%s); hands are not scored", path, e)
        return None


def _use(ctx: Ctx, model: HandModel) -> None:
    ext = ctx.extractor("anomalies")
    if isinstance(ext, AnomaliesExtractor):
        ext.hand_model = model
