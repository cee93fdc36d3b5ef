"""`bestshot status`: what the daemon knows, what is pending, what failed and why."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.cli import add_common, config_from_args, require_library
from daemon.files.areas import area_problems
from daemon.files.health import read_health
from daemon.instance import holder

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from core.config import Config

# Nothing here imports torch, mediapipe or an extractor: status answers at once on any library
# (benchmarks/cli.py). Extractor availability is what `run`/`scan` recorded when they checked.


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("status", help="counts, pending work, mode, recent errors, extractor availability")
    add_common(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--errors", type=int, default=20, help="how many recent errors to show")
    p.set_defaults(handler=handle)


def collect(cfg: Config, n_errors: int = 20) -> dict[str, Any]:
    from sqlalchemy import func, select

    from daemon.extractors import jobs
    from daemon.store import records
    from daemon.store.db import open_store
    from daemon.store.learned_state import EXTRACTORS_KEY, HAND_STATUS_KEY
    from daemon.store.schema import decisions, dup_groups, images, sets

    require_library(cfg)
    store = open_store(cfg.db_url)
    try:
        with store.read() as conn:
            by_state: dict[str, int] = dict(
                conn.execute(select(images.c.state, func.count()).group_by(images.c.state)).all()
            )
            set_by_status: dict[str, int] = dict(
                conn.execute(select(sets.c.status, func.count()).group_by(sets.c.status)).all()
            )
            out: dict[str, Any] = {
                "root": str(cfg.root),
                "daemon": _daemon(cfg),
                "images": int(sum(by_state.values())),
                "images_by_state": {k: int(v) for k, v in by_state.items()},
                "sets": int(sum(set_by_status.values())),
                "sets_by_status": {k: int(v) for k, v in set_by_status.items()},
                "pending_jobs": jobs.pending_count(conn),
                "jobs": jobs.counts_by_state(conn),
                "mode": records.get_state(conn, "mode", cfg.mode if cfg.mode != "auto" else "watch"),
                "mode_reason": records.get_state(conn, "mode_reason", ""),
                "rank_model": records.get_state(conn, "rank_model") or "prior",
                "decisions": int(conn.execute(select(func.count(func.distinct(decisions.c.set_id)))).scalar_one()),
                # Images that left the root after their set was decided: exports, decisions kept.
                "exported": int(by_state.get("exported", 0)),
                "open_errors": records.count_open_errors(conn),
                "errors": records.open_errors(conn, n_errors),
                "anomaly_calibration": _calibration(cfg, conn),
                "hand_model": records.get_state(conn, HAND_STATUS_KEY) or "not trained yet",
            }
            out.update(_ranking(cfg, conn, out["decisions"]))
            groups: dict[str, list[str]] = {}
            for r in conn.execute(
                select(dup_groups.c.group_id, images.c.path)
                .join(images, images.c.sha256 == dup_groups.c.sha256)
                .order_by(dup_groups.c.group_id, images.c.path)
            ):
                groups.setdefault(r.group_id, []).append(r.path)
            out["duplicate_groups"] = list(groups.values())
            out["recent_sets"] = _recent_sets(conn)
            checked = records.get_state(conn, EXTRACTORS_KEY) or {}
            # The rule the stored groups were made with (daemon.dedup); numpy stays unloaded.
            dedup_rule = (records.get_state(conn, "dedup_refresh") or {}).get("rule")
            learned_problems = _learned_problems(cfg, conn)
    finally:
        store.close()
    out["extractors"] = checked.get("extractors", {})
    out["extractors_checked_at"] = checked.get("checked_at")
    if dedup_rule is None:
        from core.dedup import rule_description

        dedup_rule = rule_description(cfg.dedup, bool(out["extractors"].get("clip", {}).get("available")))
    out["dedup_rule"] = dedup_rule
    # Conditions the database cannot hold: it may be the very thing that cannot be written.
    out["write_failure"] = read_health(cfg.root)
    for problem in [*learned_problems, *_outside_problems(cfg)]:
        out["errors"].insert(0, problem)
        out["open_errors"] += 1
    return out


def _outside_problems(cfg: Config) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    health = read_health(cfg.root)
    if health is not None:
        out.append(
            {
                "ts": health["write_failing_since"],
                "path": None,
                "stage": "write",
                "kind": "write_failing",
                "reason": f"writes are failing ({health.get('what')}): {health.get('reason')}; "
                "decisions are kept and retried with their own times once there is room",
            }
        )
    for area, reason in area_problems(cfg):
        out.append({"ts": None, "path": area, "stage": "layout", "kind": "outside_root", "reason": reason})
    return out


def _learned_problems(cfg: Config, conn: Connection) -> list[dict[str, Any]]:
    from daemon.store.learned_state import unreadable_learned_files

    def shown(path: Path | None) -> str | None:
        return None if path is None else str(path.relative_to(cfg.root) if path.is_relative_to(cfg.root) else path)

    return [
        {
            "ts": None,
            "path": shown(e.path),
            "stage": "learned",
            "kind": "unreadable",
            "reason": e.reason,
        }
        for e in unreadable_learned_files(cfg, conn)
    ]


def _recent_sets(conn: Connection, n: int = 5) -> list[dict[str, Any]]:
    """The newest sets, named as the user dropped them (their folder) or as singles."""
    from sqlalchemy import select

    from core.layout import from_db_path
    from daemon.store.schema import sets

    rows = conn.execute(select(sets).order_by(sets.c.created_at.desc()).limit(n)).all()
    out = []
    for r in rows:
        dropped = Path(from_db_path(r.source_folder)).name if r.source_folder else None
        kind = "folder" if dropped else ("single" if r.size == 1 else "grouped")
        out.append(
            {
                "set_id": f"set_{r.id}",
                "folder": r.folder,
                "size": r.size,
                "status": r.status,
                "kind": kind,
                "dropped_folder": dropped,
            }
        )
    return out


def _daemon(cfg: Config) -> dict[str, Any]:
    h = holder(cfg.root)
    if h is None:
        return {"running": False}
    return {"running": True, "pid": h.pid, "since": h.since, "command": h.command, "mode": h.mode}


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _calibration(cfg: Config, conn: Connection) -> dict[str, Any] | None:
    from daemon.store.learned_state import calibration_in_force

    cal = calibration_in_force(cfg, conn)
    if cal is None:
        return None
    return {
        "version": cal.version,
        "observations": cal.observations,
        "min_observations": cal.min_observations,
        "cues": {c: {"removed": r, "kept": k} for c, (r, k) in sorted(cal.counts.items())},
    }


def _ranking(cfg: Config, conn: Connection, decided: int) -> dict[str, Any]:
    """The ranking's training state and whether its proposals beat a random pick, in words."""
    from core.rank.modes import agreement_vs_chance
    from daemon.rank.ranking import history
    from daemon.store import records
    from daemon.store.learned_state import TRAINING_KEY

    s = cfg.rank
    user = [e for e in history(conn) if not e.auto_decided]
    above, words = agreement_vs_chance(user, s.metrics_window, s.precision_bound_z)
    training = records.get_state(conn, TRAINING_KEY)
    if training is None:
        training = (
            f"not trained yet: {decided} decided sets, training needs {s.min_train_decisions} "
            "(rank.min_train_decisions); the prior ranks until then"
        )
    return {"rank_training": training, "agreement_above_chance": above, "agreement": words}


def handle(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    info = collect(cfg, args.errors)
    if args.json:
        print(json.dumps(info, indent=None, sort_keys=True))
        return 0
    print(f"root     {info['root']}")
    d = info["daemon"]
    if d["running"]:
        print(
            f"daemon   running: pid {d['pid']}, since {_when(d['since']) if d['since'] else '?'}, "
            f"`bestshot {d['command']}`, mode setting {d['mode']}"
        )
    else:
        print(
            f"daemon   not running on this root (start it: bestshot run --root '{info['root']}', "
            "or bestshot service install)"
        )
    print(f"mode     {info['mode']}" + (f"  ({info['mode_reason']})" if info["mode_reason"] else ""))
    print(f"ranking  {info['rank_model']}, {info['decisions']} decided sets")
    print(f"         training: {info['rank_training']}")
    print(f"         {info['agreement']}")
    cal = info["anomaly_calibration"]
    if cal is None:
        print("cues     geometric scores (no calibration learned from your decisions yet)")
    else:
        learned = [
            f"{c} {v['removed']}/{v['removed'] + v['kept']} removed"
            for c, v in cal["cues"].items()
            if v["removed"] + v["kept"] >= cal["min_observations"]
        ]
        print(
            f"cues     {cal['version']} from {cal['observations']} region outcomes"
            + (f"; calibrated: {', '.join(learned)}" if learned else "")
        )
    print(f"hands    learned model {info['hand_model']}")
    print(f"images   {info['images']}  {info['images_by_state']}")
    print(f"sets     {info['sets']}  {info['sets_by_status']}")
    for s in info["recent_sets"]:
        what = {
            "folder": f"your folder '{s['dropped_folder']}', {s['size']} images",
            "single": "single image",
            "grouped": f"{s['size']} loose images grouped",
        }[s["kind"]]
        print(f"         {s['folder']}/  ({what}; {s['status']})")
    print(f"exported {info['exported']} images taken out of the root after their set was decided (decisions kept)")
    print(f"pending  {info['pending_jobs']} jobs")
    if info["extractors_checked_at"] is None:
        print("extractors: not checked yet (`bestshot run` checks them at start; `bestshot doctor` now)")
    else:
        print(f"extractors (as checked at {_when(info['extractors_checked_at'])}):")
    for name, e in info["extractors"].items():
        line = f"  {name:<9} v{e['version']}  " + ("available" if e["available"] else f"UNAVAILABLE: {e['reason']}")
        print(line + (f"\n            fix: {e['fix']}" if not e["available"] and e["fix"] else ""))
    print(f"dedup    {info['dedup_rule']}")
    print(f"         {len(info['duplicate_groups'])} near-duplicate groups")
    for g in info["duplicate_groups"][:5]:
        print("           " + ", ".join(g))
    print(f"errors   {info['open_errors']} open" + (":" if info["errors"] else ""))
    for err in info["errors"]:
        print(f"  {err['path']}  [{err['stage']}/{err['kind']}] {err['reason']}")
    return 0
