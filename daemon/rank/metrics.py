"""Metrics over the decision history, and the agreement/coverage chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.rank.modes import (
    agreement_vs_chance,
    coverage,
    crop_acceptance,
    residual_anomaly_rate,
    rolling_agreement,
    rolling_chance,
)
from daemon.context import Ctx
from daemon.rank.ranking import history
from daemon.store import records


def compute_metrics(ctx: Ctx) -> dict[str, Any]:
    s = ctx.cfg.rank
    with ctx.store.read() as conn:
        h = history(conn)
        mode = records.get_state(conn, "mode", "watch")
        reason = records.get_state(conn, "mode_reason", "")
        threshold = records.get_state(conn, "batch_threshold")
        model = records.get_state(conn, "rank_model") or "prior"
    user = [e for e in h if not e.auto_decided]
    above, words = agreement_vs_chance(user, s.metrics_window, s.precision_bound_z)
    return {
        "decided_sets": len(h),
        "mode": mode,
        "mode_reason": reason,
        "model": model,
        "top1_agreement": rolling_agreement(user, s.metrics_window),
        "chance_top1": rolling_chance(user, s.metrics_window),
        "agreement_above_chance": above,
        "agreement_verdict": words,
        "crop_acceptance": crop_acceptance(user, s.metrics_window, s.crop_accept_iou),
        "residual_anomaly_rate": residual_anomaly_rate(h, s.metrics_window),
        "coverage": coverage(h, s.metrics_window, threshold),
        "batch_threshold": threshold,
    }


def write_chart(ctx: Ctx, out: Path, last: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: the daemon and CI are headless
    import matplotlib.pyplot as plt

    with ctx.store.read() as conn:
        h = history(conn)[-last:]
    threshold = None
    with ctx.store.read() as conn:
        threshold = records.get_state(conn, "batch_threshold")
    w = max(1, min(ctx.cfg.rank.metrics_window, 50))
    xs, agree, chance, cover = [], [], [], []
    for i in range(1, len(h) + 1):
        window = h[max(0, i - w) : i]
        xs.append(i)
        agree.append(rolling_agreement([e for e in window if not e.auto_decided], w))
        chance.append(rolling_chance([e for e in window if not e.auto_decided], w))
        cover.append(coverage(window, w, threshold))
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.plot(xs, [a if a is not None else float("nan") for a in agree], label=f"top-1 agreement (last {w})")
    # agreement means something only against what a random pick of the same sets would score
    ax.plot(
        xs, [c if c is not None else float("nan") for c in chance], "--", color="grey", label="chance (random pick)"
    )
    ax.plot(xs, [c if c is not None else float("nan") for c in cover], label="coverage (batch would decide)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("decided sets")
    ax.set_title("bestshot: agreement and coverage")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
