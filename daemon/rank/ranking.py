"""Ranking wiring: image signals from the store, proposals per set, and the decision history.

Proposals are made for every filed, undecided set whose sidecars are complete, in every mode:
in watch mode they are kept in the database only (shadow proposals), so that agreement can be
measured honestly from the first decision on; from recommend on they are also written as
raw/set_<id>/proposal.json with a Finder tag on the proposed winner.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, exists, func, insert, or_, select

from core.atomicfile import atomic_write
from core.errors import BestshotError
from core.layout import PREVIEW_SUFFIX, fit_name, from_db_path
from core.metadata import normalise_prompt
from core.rank.evaluate import Decision as TrainDecision
from core.rank.features import FEATURES_VERSION, FeatureSpace, ImageSignals, summarise_anomaly_report
from core.rank.model import RankModel, RankModelError
from core.rank.modes import HistoryEntry, box_iou
from core.rank.prior import prior_model
from core.rank.propose import Member, SetRanking, propose, review_order
from core.sidecar_types import Box
from daemon.context import Ctx, PriorFit
from daemon.extractors.sidecar_store import latest_payload
from daemon.labels.tags import OWN_TAG_PREFIX, replace_prefixed_tags
from daemon.store import records
from daemon.store.schema import (
    decisions,
    image_metadata,
    images,
    jobs,
    proposal_due,
    proposals,
    set_members,
    sets,
    sidecars,
)

log = logging.getLogger(__name__)
TAG_PREFIX = OWN_TAG_PREFIX


_SIGNAL_EXTRACTORS = ("quality", "face", "hands", "pose", "anomalies")
# What a proposal shows of the winner besides its rank: flags and the crop.
_PROPOSAL_SIDECARS = ("anomalies", "crop")


def signals_for(conn: Connection, shas: Iterable[str]) -> dict[str, ImageSignals]:
    """The ranking signals of these images only: every query is limited to them, so the cost of a
    proposal round grows with the sets proposed, not with the library."""
    shas = list(dict.fromkeys(shas))
    dup: set[str] = set()
    emb: dict[str, np.ndarray] = {}
    payloads: dict[tuple[str, str], dict[str, Any]] = {}
    # SQLite binds at most 999 parameters per statement in older builds.
    for chunk in (shas[i : i + 900] for i in range(0, len(shas), 900)):
        dup.update(
            r.sha256
            for r in conn.execute(
                select(set_members.c.sha256).where(
                    set_members.c.sha256.in_(chunk), set_members.c.near_duplicate_of.is_not(None)
                )
            )
        )
        # Ascending version, so the newest version of each extractor wins.
        for e in conn.execute(
            select(sidecars.c.sha256, sidecars.c.blob)
            .where(sidecars.c.sha256.in_(chunk), sidecars.c.extractor == "clip", sidecars.c.blob.is_not(None))
            .order_by(sidecars.c.version)
        ):
            emb[e.sha256] = np.frombuffer(e.blob, dtype="<f4")
        for p in conn.execute(
            select(sidecars.c.sha256, sidecars.c.extractor, sidecars.c.payload)
            .where(sidecars.c.sha256.in_(chunk), sidecars.c.extractor.in_(_SIGNAL_EXTRACTORS))
            .order_by(sidecars.c.version)
        ):
            payloads[(p.sha256, p.extractor)] = json.loads(p.payload)
    out: dict[str, ImageSignals] = {}
    for sha in shas:
        out[sha] = ImageSignals(
            quality=payloads.get((sha, "quality")),
            face=payloads.get((sha, "face")),
            hands=payloads.get((sha, "hands")),
            pose=payloads.get((sha, "pose")),
            anomaly=summarise_anomaly_report(report) if (report := payloads.get((sha, "anomalies"))) else None,
            near_duplicate=sha in dup,
            embedding=emb.get(sha),
        )
    return out


def library(conn: Connection) -> dict[str, ImageSignals]:
    shas = [r.sha256 for r in conn.execute(select(images.c.sha256).where(images.c.state == "present"))]
    return signals_for(conn, shas)


# ---- the model in force ---------------------------------------------------------------------
def rank_dir(ctx: Ctx) -> Path:
    return ctx.cfg.path("models") / "rank"


# The prior standardises its features over the library (up to `rank.prior_fit_images` images),
# which means reading those images' sidecars: about a second per 1,000 images
# (benchmarks/proposals.py). The standardisation barely moves
# while a library grows by a few images, so a fit is reused until the number of present images
# has changed by more than this fraction of what it was fitted on. The fit is kept in the
# database with the number it was fitted on, so a restart reuses it too.
PRIOR_REFIT_CHANGE = 0.1
_PRIOR_STATE = "prior_fit"  # {"images": n, "space": FeatureSpace.to_dict(), "created": ISO time}


def current_model(ctx: Ctx, conn: Connection) -> RankModel:
    """The trained model in force, or the documented prior when none has been switched in yet.

    A trained model carries its own standardisation; only the prior needs the library, to
    standardise its features over the user's images.
    """
    version = records.get_state(conn, "rank_model")
    if version:
        try:
            return RankModel.load(rank_dir(ctx) / f"{version}.json")
        except RankModelError as e:
            log.error("cannot load rank model %s (%s); using the prior", version, e.reason)
    n = present_images(conn)
    fitted = ctx.prior_fit or _stored_prior(ctx, conn)
    if fitted is not None and abs(n - fitted.images) <= PRIOR_REFIT_CHANGE * fitted.images:
        ctx.prior_fit = fitted
        return fitted.model
    return fit_prior(ctx, conn, n)


def present_images(conn: Connection) -> int:
    return int(records.image_count(conn).present)


def fit_prior(ctx: Ctx, conn: Connection, n: int | None = None) -> RankModel:
    """The prior standardised over the present images (at most `rank.prior_fit_images` of them:
    `prior_sample`), kept in memory and in the database."""
    n = present_images(conn) if n is None else n
    lib = signals_for(conn, prior_sample(conn, ctx.cfg.rank.prior_fit_images))
    space = FeatureSpace.fit(list(lib.values()), ctx.cfg.rank.pca_components, ctx.cfg.rank.pca_min_images)
    model = prior_model(space, ctx.cfg.rank.prior)
    ctx.prior_fit = PriorFit(n, model)
    with ctx.store.write() as wconn:
        records.put_state(wconn, _PRIOR_STATE, {"images": n, "space": space.to_dict(), "created": model.created})
    return model


def prior_sample(conn: Connection, limit: int) -> list[str]:
    """The present images the prior is standardised over: every one (read as `library` reads
    them) when there are at most `limit`, else the `limit` with the smallest sha256. A sha256 is
    a content hash, so that is a pseudo-random sample that stays put while the library grows, and
    the fit reads `limit` images' sidecars however large the library is."""
    present = select(images.c.sha256).where(images.c.state == "present")
    shas = [r.sha256 for r in conn.execute(present.limit(limit + 1))]
    if len(shas) <= limit:
        return shas
    return [r.sha256 for r in conn.execute(present.order_by(images.c.sha256).limit(limit))]


def _stored_prior(ctx: Ctx, conn: Connection) -> PriorFit | None:
    """The fit kept by an earlier run, with today's weights (a changed `rank.prior` is a new version)."""
    kept = records.get_state(conn, _PRIOR_STATE)
    if not kept:
        return None
    try:
        space = FeatureSpace.from_dict(kept["space"])
        when = datetime.fromisoformat(kept["created"])
        images_at_fit = int(kept["images"])
    except (KeyError, TypeError, ValueError) as e:
        log.warning("the stored prior fit is unreadable (%s); fitting it again", e)
        return None
    if space.version != FEATURES_VERSION:  # features changed since: the stored columns are not today's
        return None
    return PriorFit(images_at_fit, prior_model(space, ctx.cfg.rank.prior, when))


# ---- proposals ------------------------------------------------------------------------------
def ready_sets(
    conn: Connection, model_version: str, published: bool, among: Collection[str] | None = None
) -> list[str]:
    """Filed, undecided sets with no pending sidecar work and no proposal from this model yet, or
    whose anomaly report or crop was recomputed since their last proposal (a new calibration of
    the cues, a version bump), so the proposal carries the crop as it is now.

    With `published`, a shadow proposal (made in watch mode) does not count: once the mode
    allows it, the set is proposed again so the user sees it. With `among`, only those sets are
    looked at (every subquery is limited to them, so the cost follows their number).
    """
    if among is not None and len(among) > _AMONG_CHUNK:
        # Bound parameters per statement are limited (32,766 in most SQLite builds).
        ids_all = sorted(among)
        ready = [
            r
            for i in range(0, len(ids_all), _AMONG_CHUNK)
            for r in _ready(conn, model_version, published, ids_all[i : i + _AMONG_CHUNK])
        ]
        return [r.id for r in sorted(ready, key=lambda r: r.created_at)]
    return [r.id for r in _ready(conn, model_version, published, among)]


_AMONG_CHUNK = 150


def _ready(conn: Connection, model_version: str, published: bool, among: Collection[str] | None) -> list[Any]:
    """Each condition is a look-up per set (its members, its proposals: primary keys and
    ix_proposals_set_id), so the cost follows the sets looked at."""
    member = set_members.c.set_id == sets.c.id
    busy = exists().where(member, jobs.c.sha256 == set_members.c.sha256, jobs.c.state.in_(("pending", "running")))
    proposed = exists().where(
        proposals.c.set_id == sets.c.id,
        proposals.c.model_version == model_version if model_version else proposals.c.source == "prior",
        *((proposals.c.mode != "watch",) if published else ()),
    )
    # Correlated to the set being looked at, two levels up (inside the EXISTS below).
    last = select(func.max(proposals.c.ts)).where(proposals.c.set_id == sets.c.id).correlate(sets).scalar_subquery()
    # Nested so the member's sidecars are found by their key (sha256), not by time.
    newer = exists().where(
        sidecars.c.sha256 == set_members.c.sha256,
        sidecars.c.extractor.in_(_PROPOSAL_SIDECARS),
        sidecars.c.created_at > last,
    )
    reanalysed = exists().where(member, newer)
    q = select(sets.c.id, sets.c.created_at).where(sets.c.status == "filed", ~busy, or_(~proposed, reanalysed))
    if among is not None:
        q = q.where(sets.c.id.in_(list(among)))
    return list(conn.execute(q.order_by(sets.c.created_at)))


# What every filed set was last checked against: when the model in force or the publishing
# changes, every filed set may be due again (the triggers only see changes to sets themselves).
_DUE_FOR = "proposal_due_for"


# A round proposes at most this many sets, the oldest first; the others stay marked for the next
# rounds, which the worker runs at once, between its events (RankLoop.more). So a change of model
# or mode (every filed set due again) or a first scan of thousands of sets is spread over short
# rounds, not one that grows with the library.
PROPOSALS_PER_ROUND = 100


def due_sets(conn: Connection, model_version: str, published: bool, limit: int | None = None) -> list[str]:
    """`ready_sets` over the sets marked due since the last round (proposal_due, kept by the
    database's triggers), in one write transaction; the sets looked at and found not ready are
    unmarked (whatever makes them ready later marks them again). With `limit`, only that many
    marked sets are looked at, the oldest first; the others stay marked."""
    key = _due_key(model_version, published)
    if records.get_state(conn, _DUE_FOR) != key:
        conn.execute(
            insert(proposal_due)
            .prefix_with("OR IGNORE")
            .from_select(["set_id"], select(sets.c.id).where(sets.c.status == "filed"))
        )
        records.put_state(conn, _DUE_FOR, key)
    q = select(proposal_due.c.set_id)
    if limit is not None:
        # An outer join: a mark whose set is gone is looked at (and unmarked) too, never left behind.
        q = (
            q.outerjoin(sets, sets.c.id == proposal_due.c.set_id)
            .order_by(sets.c.created_at, proposal_due.c.set_id)
            .limit(limit)
        )
    due = [r.set_id for r in conn.execute(q)]
    if not due:
        return []
    ready = ready_sets(conn, model_version, published, among=due)
    done = set(due) - set(ready)
    for chunk in _chunks(sorted(done)):
        conn.execute(delete(proposal_due).where(proposal_due.c.set_id.in_(chunk)))
    return ready


def _due_key(model_version: str, published: bool) -> dict[str, Any]:
    return {"model": model_version, "published": published}


def _chunks(items: Sequence[str], size: int = 900) -> Iterable[Sequence[str]]:
    return (items[i : i + size] for i in range(0, len(items), size))


def members_of(conn: Connection, set_id: str) -> list[tuple[str, str, str]]:
    """(sha256, file name, current relative path) in position order."""
    rows = conn.execute(
        select(images.c.sha256, images.c.original_name, images.c.path)
        .join(set_members, set_members.c.sha256 == images.c.sha256)
        .where(set_members.c.set_id == set_id)
        .order_by(set_members.c.position)
    ).all()
    return [(r.sha256, Path(from_db_path(r.original_name)).name, r.path) for r in rows]


def proposal_body(conn: Connection, ranking: SetRanking, mode: str) -> dict[str, Any]:
    body = ranking.to_dict()
    crop = latest_payload(conn, ranking.winner, "crop")
    body["crop"] = crop  # best + 2 fallbacks, residual anomalies per candidate, verdict
    body["mode"] = mode
    body["created"] = time.time()
    return body


def proposals_waiting(ctx: Ctx) -> bool:
    """Sets are still marked due (a round proposed its PROPOSALS_PER_ROUND and left the rest)."""
    with ctx.store.read() as conn:
        return conn.execute(select(proposal_due.c.set_id).limit(1)).first() is not None


def make_proposals(ctx: Ctx, mode: str, limit: int | None = None) -> list[SetRanking]:
    """Proposals for the sets due and ready; with `limit` (a round: PROPOSALS_PER_ROUND), at most
    that many sets looked at (`due_sets`)."""
    published = mode != "watch"
    with ctx.store.read() as conn:
        # The prior's version changes with the library, so any prior proposal counts for it.
        version = records.get_state(conn, "rank_model") or ""
        idle = (
            records.get_state(conn, _DUE_FOR) == _due_key(version, published)
            and not conn.execute(select(proposal_due.c.set_id).limit(1)).first()
        )
    if idle:  # the round with nothing to do reads two rows and writes nothing
        return []
    with ctx.store.write() as conn:
        todo = due_sets(conn, version, published, limit)
    if not todo:
        return []
    with ctx.store.read() as conn:
        model = current_model(ctx, conn)
        members = {set_id: members_of(conn, set_id) for set_id in todo}
        lib = signals_for(conn, [sha for mem in members.values() for sha, _n, _p in mem])
        made = []
        for set_id, mem in members.items():
            ranking = propose(
                f"set_{set_id}",
                [Member(sha, name, lib.get(sha, ImageSignals())) for sha, name, _ in mem],
                model,
                ctx.cfg.rank,
            )
            made.append((set_id, ranking, proposal_body(conn, ranking, mode), mem))
    if not published:  # nothing goes out between them: one transaction (one fsync) for all
        with ctx.store.write() as conn:
            for set_id, ranking, body, _mem in made:
                _record_proposal(conn, set_id, ranking, body, mode)
        return [ranking for _s, ranking, _b, _m in made]
    out = []
    for set_id, ranking, body, mem in made:
        with ctx.store.write() as conn:
            _record_proposal(conn, set_id, ranking, body, mode)
        publish(ctx, set_id, ranking, body, mem)
        out.append(ranking)
    return out


def _record_proposal(conn: Connection, set_id: str, ranking: SetRanking, body: dict[str, Any], mode: str) -> None:
    conn.execute(
        insert(proposals).values(
            set_id=set_id,
            ts=time.time(),
            model_version=ranking.model_version,
            source=ranking.source,
            winner=ranking.winner,
            confidence=ranking.confidence,
            margin=ranking.margin,
            uncertain=ranking.uncertain,
            mode=mode,
            body=json.dumps(body),
        )
    )
    conn.execute(delete(proposal_due).where(proposal_due.c.set_id == set_id))


def publish(ctx: Ctx, set_id: str, ranking: SetRanking, body: dict[str, Any], mem: list[tuple[str, str, str]]) -> None:
    """proposal.json in the set folder and a Finder tag on the proposed winner, where the user looks."""
    with ctx.store.read() as conn:
        folder = ctx.abs(conn.execute(select(sets.c.folder).where(sets.c.id == set_id)).scalar_one())
    atomic_write(folder / "proposal.json", json.dumps(body, indent=2).encode())
    crop = body.get("crop") or {}
    needs_crop = crop.get("verdict") == "crop"
    preview = ctx.cfg.path("labels") / "crops" / f"{ranking.winner}.crop.jpg"
    if crop.get("verdict") in ("crop", "review", "reject") and preview.exists():
        # Next to the images, so Finder's preview shows the proposed box where the user decides.
        atomic_write(folder / fit_name(Path(ranking.winner_name).stem, PREVIEW_SUFFIX), preview.read_bytes())
    for sha, _name, rel in mem:
        path = ctx.abs(rel)
        if not path.exists():
            continue
        wanted = []
        if sha == ranking.winner:
            wanted.append(TAG_PREFIX + ("crop" if needs_crop else "winner"))
            if ranking.uncertain:
                wanted.append(TAG_PREFIX + "check")
        try:
            replace_prefixed_tags(path, TAG_PREFIX, wanted)
        except BestshotError as e:  # a volume without xattrs: proposal.json still says it all
            log.info("cannot tag %s: %s", path, e.reason)


def refresh_review_links(ctx: Ctx) -> None:
    """exports/review_queue/next/: one link per uncertain set folder, numbered in review order.

    Only symlinks this function made are ever removed; anything else the user put there stays.
    A link already right is left alone.
    """
    target = ctx.cfg.path("review_queue") / "next"
    target.mkdir(parents=True, exist_ok=True)
    with ctx.store.read() as conn:
        folders = [ctx.abs(f) for f in uncertain_folders(conn)]
    wanted = {f"{i:03}__{folder.name}": os.path.relpath(folder, target) for i, folder in enumerate(folders, 1)}
    for old in target.iterdir():
        if old.is_symlink() and wanted.get(old.name) != os.readlink(old):
            old.unlink()
    for name, rel in wanted.items():
        link = target / name
        if not os.path.lexists(link):
            link.symlink_to(rel)


def uncertain_folders(conn: Connection) -> list[str]:
    """The folders of the undecided sets whose latest proposal is uncertain, in `review_order`
    (least confident first), from the proposals' columns: one look-up per undecided set
    (ix_sets_status, ix_proposals_set_id), no proposal body read."""
    latest = select(func.max(proposals.c.id)).where(proposals.c.set_id == sets.c.id).correlate(sets).scalar_subquery()
    rows = conn.execute(
        select(sets.c.id, sets.c.folder, proposals.c.confidence, proposals.c.margin)
        .select_from(sets)
        .join(proposals, proposals.c.id == latest)
        .where(sets.c.status == "filed", proposals.c.uncertain)
    ).all()
    # review_order's key for uncertain sets: confidence, margin, then "set_<id>" (the id's order).
    return [from_db_path(r.folder) for r in sorted(rows, key=lambda r: (r.confidence, r.margin, r.id))]


def review_queue(ctx: Ctx) -> list[dict[str, Any]]:
    """Open proposals (undecided sets), uncertain and least confident first."""
    with ctx.store.read() as conn:
        rows = conn.execute(
            select(proposals.c.set_id, proposals.c.body, sets.c.folder)
            .join(sets, sets.c.id == proposals.c.set_id)
            .where(
                sets.c.status == "filed",
                proposals.c.id.in_(select(func.max(proposals.c.id)).group_by(proposals.c.set_id)),
            )
        ).all()
    bodies = {r.set_id: (json.loads(r.body), r.folder) for r in rows}
    rankings = [_ranking_from_body(b) for b, _ in bodies.values()]
    ordered = review_order(rankings)
    return [dict(bodies[r.set_id[4:]][0], folder=from_db_path(bodies[r.set_id[4:]][1])) for r in ordered]


def _ranking_from_body(b: dict[str, Any]) -> SetRanking:
    from core.rank.propose import ImageScore

    return SetRanking(
        set_id=b["set_id"],
        winner=b["winner_id"],
        winner_name=b["winner"],
        images=tuple(ImageScore(i["image_id"], i["name"], i["score"], i["probability"]) for i in b["images"]),
        margin=b["margin"],
        confidence=b["confidence"],
        source=b["source"],
        model_version=b["model_version"],
        reasons=tuple(b["reasons"]),
        residual_anomalies=tuple(b["residual_anomalies"]),
        uncertain=b["uncertain"],
        uncertain_reasons=tuple(b["uncertain_reasons"]),
    )


# ---- decisions as training data and as history ------------------------------------------------
def _latest_user_decisions(conn: Connection) -> Sequence[Any]:
    """The newest line per set, for lines the user made (observed moves or `bestshot log`)."""
    newest = select(func.max(decisions.c.id)).group_by(decisions.c.set_id)
    return conn.execute(select(decisions).where(decisions.c.id.in_(newest)).order_by(decisions.c.ts)).all()


def training_decisions(conn: Connection) -> list[TrainDecision]:
    out = []
    for d in _latest_user_decisions(conn):
        if d.source == "batch" or d.winner is None or d.closed_reason == "retracted":
            continue
        members = tuple(
            r.sha256
            for r in conn.execute(
                select(set_members.c.sha256).where(set_members.c.set_id == d.set_id).order_by(set_members.c.position)
            )
        )
        if d.winner not in members:
            continue
        prompt = conn.execute(select(image_metadata.c.prompt).where(image_metadata.c.sha256 == d.winner)).scalar()
        group = "prompt:" + normalise_prompt(prompt) if prompt else f"set:{d.set_id}"
        out.append(TrainDecision(d.set_id, group, d.ts, members, d.winner))
    return out


def residual_anomalies(conn: Connection, winner: str, crop: Box | None) -> int | None:
    """Anomalies left on the final image: all of the winner's, or those the user's crop kept."""
    report = latest_payload(conn, winner, "anomalies")
    if report is None:
        return None
    boxes = [Box.from_dict(a["box"]) for a in report.get("anomalies", [])]
    if crop is not None:
        boxes = [b for b in boxes if b.intersection(crop) > 0]
    return len(boxes)


def history(conn: Connection) -> list[HistoryEntry]:
    """Every decided set, oldest first, against the proposal made before the decision was known."""
    out = []
    for d in _latest_user_decisions(conn):
        if d.winner is None or d.closed_reason == "retracted":
            continue
        p = conn.execute(
            select(proposals)
            .where(proposals.c.set_id == d.set_id, proposals.c.ts <= d.ts)
            .order_by(proposals.c.id.desc())
            .limit(1)
        ).first()
        if d.source == "batch":
            p = (
                conn.execute(
                    select(proposals)
                    .where(proposals.c.set_id == d.set_id, proposals.c.batch_id.is_not(None))
                    .order_by(proposals.c.id.desc())
                    .limit(1)
                ).first()
                or p
            )
        crop_iou = None
        user_box = Box.from_dict(json.loads(d.crop_box)) if d.crop_box else None
        if p is not None and user_box is not None:
            best = ((json.loads(p.body).get("crop") or {}).get("best") or {}).get("box")
            crop_iou = box_iou(user_box, Box.from_dict(best)) if best else None
        out.append(
            HistoryEntry(
                set_id=d.set_id,
                ts=d.ts,
                user_winner=d.winner,
                proposed_winner=p.winner if p is not None else None,
                confidence=p.confidence if p is not None else None,
                source="prior" if p is not None and p.source == "prior" else "model",
                auto_decided=d.source == "batch",
                crop_iou=crop_iou,
                residual_anomalies=residual_anomalies(conn, d.winner, user_box),
                set_size=int(
                    conn.execute(
                        select(func.count()).select_from(set_members).where(set_members.c.set_id == d.set_id)
                    ).scalar_one()
                )
                or None,
            )
        )
    return out
