"""Training job and mode bookkeeping, scheduled by the daemon and run by `bestshot train`.

Each trained version is kept under models/rank/ with its model card; the daemon switches to a
new version only when it is not worse (held-out top-1 and log-loss) than the prior and the version
in force, and puts the prior back when the version in force does worse than the prior.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from core.atomicfile import atomic_write
from core.rank.model import RankModel, RankModelError
from core.rank.modes import ModeDecision, decide_mode
from core.rank.train import train
from daemon.anomaly.calibration import learn_calibration
from daemon.anomaly.hand_model import learn_hand_model
from daemon.anomaly.learning_data import decided_images
from daemon.context import Ctx
from daemon.rank.ranking import history, library, rank_dir, training_decisions
from daemon.store import learned_state, records

log = logging.getLogger(__name__)
# state key: what the last training run did, or why it could not run (shown by `bestshot status`)
TRAINING_KEY = learned_state.TRAINING_KEY


@dataclass(frozen=True)
class TrainOutcome:
    version: str | None
    switched: bool
    reason: str
    decisions: int


def run_training(ctx: Ctx) -> TrainOutcome:
    """Recalibrate the anomaly cues and retrain the hand model, then train a ranking model (whose
    features include the anomalies); then say what is in force under models/, for a daemon
    running in another process (its watcher sees the file)."""
    try:
        return _train_all(ctx)
    finally:
        with ctx.store.read() as conn:
            ctx.learned = learned_state.learned_versions(conn)  # this process's extractors already use them
        learned_state.announce_in_force(ctx.cfg, ctx.learned)


def _train_all(ctx: Ctx) -> TrainOutcome:
    with ctx.store.read() as conn:
        images = list(decided_images(conn))  # read once for both
    learn_calibration(ctx, images)
    learn_hand_model(ctx, images)
    with ctx.store.read() as conn:
        decided = training_decisions(conn)
        lib = library(conn)
        current = records.get_state(conn, "rank_model")
    previous = None
    if current:
        try:
            previous = RankModel.load(rank_dir(ctx) / f"{current}.json")
        except RankModelError as e:
            log.warning("previous model unreadable (%s); training from scratch", e.reason)
    try:
        result = train(decided, lib, ctx.cfg.rank, previous=previous)
    except RankModelError as e:
        log.warning("ranking model not trained on %d decided sets: %s", len(decided), e.reason)
        with ctx.store.write() as conn:
            records.put_state(conn, "rank_trained_at_decisions", len(decided))
            records.put_state(conn, TRAINING_KEY, f"not trained on {len(decided)} decided sets: {e.reason}")
        return TrainOutcome(None, False, e.reason, len(decided))
    d = rank_dir(ctx)
    d.mkdir(parents=True, exist_ok=True)
    result.model.save(d / f"{result.model.version}.json")
    atomic_write(d / f"{result.model.version}.card.json", json.dumps(result.card, indent=2, default=str).encode())
    with ctx.store.write() as conn:
        records.put_state(conn, "rank_trained_at_decisions", len(decided))
        if result.switch:
            records.put_state(conn, "rank_model", result.model.version)
        elif result.revert_to_prior:
            records.put_state(conn, "rank_model", None)  # the prior ranks again (ranking.current_model)
        state = "switched in" if result.switch else "not switched in"
        records.put_state(
            conn,
            TRAINING_KEY,
            f"{result.model.version} on {len(decided)} decided sets, {state}: {result.switch_reason}",
        )
    log.info(
        "trained %s on %d decisions: %s (%s)",
        result.model.version,
        len(decided),
        "switched" if result.switch else "put the prior back" if result.revert_to_prior else "kept the current model",
        result.switch_reason,
    )
    return TrainOutcome(result.model.version, result.switch, result.switch_reason, len(decided))


def retrain_due(ctx: Ctx) -> bool:
    with ctx.store.read() as conn:
        n = len(training_decisions(conn))
        last = records.get_state(conn, "rank_trained_at_decisions")
    if n < ctx.cfg.rank.min_train_decisions:
        return False
    return last is None or n - int(last) >= ctx.cfg.rank.retrain_every_decisions


def update_mode(ctx: Ctx) -> ModeDecision:
    with ctx.store.read() as conn:
        hist = history(conn)
        current = records.get_state(conn, "mode", "watch")
    decision = decide_mode(ctx.cfg.mode, current, hist, ctx.cfg.rank)
    if decision.mode != current:
        log.info("mode %s -> %s: %s", current, decision.mode, decision.reason)
    with ctx.store.write() as conn:
        records.put_state(conn, "mode", decision.mode)
        records.put_state(conn, "mode_reason", decision.reason)
        records.put_state(conn, "batch_threshold", decision.threshold)
    return decision
