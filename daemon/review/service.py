"""What the review page shows and does. Every action makes the moves the user would make in
Finder (journaled, link-then-unlink, under one journal batch id per action), then records the
decision and appends its session line at once, through the same tracker as the watcher. The
line says what the watcher would conclude from those moves (content_key), so when the daemon
later sees them it finds the set already decided and writes nothing more.

Only set ids and member indices come from a request; every path comes from the database.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import delete, select, update

from core.errors import BestshotError
from core.hashing import sha256_file
from core.labels.decide import Decision, decide, retraction
from core.labels.session import SessionLine, parse_line
from core.layout import from_db_path
from core.review import cropbox
from core.review.regions import RegionLabel, RegionLabelError, merge, parse_request
from daemon.context import Ctx
from daemon.extractors.sidecar_store import latest_payload
from daemon.files.fileops import unique_destination
from daemon.labels.decide import DecisionTracker
from daemon.rank.ranking import review_queue
from daemon.store import records
from daemon.store.schema import crops, decisions, images, journal, observations, proposals, set_members, sets

log = logging.getLogger(__name__)

ACTION_PREFIX = "review-"
ACTIONS = ("approve", "crop", "reject")
_SET_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SAVE_FORMAT = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WEBP"}


class ReviewError(BestshotError):
    """A request the page cannot carry out; nothing was changed. `status` is the HTTP status."""

    kind = "review"
    status = 400


class NotFoundError(ReviewError):
    status = 404


class ConflictError(ReviewError):
    """The files are not where the action needs them (moved in Finder meanwhile, or gone)."""

    status = 409


@dataclass(frozen=True)
class MemberRow:
    index: int
    sha256: str
    name: str
    rel: str
    width: int
    height: int
    format: str
    state: str


def check_set_id(set_id: str) -> str:
    if not _SET_ID.match(set_id):
        raise NotFoundError(None, "no such set")
    return set_id


def _tag_ok(t: object) -> bool:
    return (
        isinstance(t, str)
        and 0 < len(t) <= 64
        and t == t.strip()
        and not t.startswith(".")
        and "/" not in t
        and "\\" not in t
        and "\x00" not in t
    )


class ReviewService:
    def __init__(self, ctx: Ctx, tracker: DecisionTracker) -> None:
        self.ctx = ctx
        self.tracker = tracker

    # ---- reading ------------------------------------------------------------------------------
    def members(self, set_id: str) -> list[MemberRow]:
        check_set_id(set_id)
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(
                    images.c.sha256,
                    images.c.original_name,
                    images.c.path,
                    images.c.width,
                    images.c.height,
                    images.c.format,
                    images.c.state,
                )
                .join(set_members, set_members.c.sha256 == images.c.sha256)
                .where(set_members.c.set_id == set_id)
                .order_by(set_members.c.position)
            ).all()
        if not rows:
            raise NotFoundError(None, f"no set {set_id!r}")
        return [
            MemberRow(
                i, r.sha256, Path(from_db_path(r.original_name)).name, r.path, r.width, r.height, r.format, r.state
            )
            for i, r in enumerate(rows)
        ]

    def member(self, set_id: str, index: int) -> MemberRow:
        mem = self.members(set_id)
        if not 0 <= index < len(mem):
            raise NotFoundError(None, f"set {set_id} has no member {index}")
        return mem[index]

    def file_of(self, m: MemberRow) -> Path:
        """The member's file, only when it is a regular file inside the root (never a link)."""
        p = self.ctx.abs(m.rel)
        root = self.ctx.root.resolve()
        if m.state != "present" or p.is_symlink() or not p.is_file() or not p.resolve().is_relative_to(root):
            raise ConflictError(None, f"{m.name} is not in its place any more (moved or deleted meanwhile)")
        return p

    def queue(self) -> list[dict[str, Any]]:
        """`bestshot queue`'s order (uncertain first); sets decided meanwhile have left it."""
        return [
            {
                "set_id": it["set_id"][4:],
                "folder": Path(it["folder"]).name,
                "uncertain": bool(it["uncertain"]),
                "confidence": it["confidence"],
            }
            for it in review_queue(self.ctx)
        ]

    def view(self, set_id: str) -> dict[str, Any]:
        mem = self.members(set_id)
        with self.ctx.store.read() as conn:
            s = conn.execute(select(sets.c.folder, sets.c.status).where(sets.c.id == set_id)).one()
            body_row = conn.execute(
                select(proposals.c.body).where(proposals.c.set_id == set_id).order_by(proposals.c.id.desc()).limit(1)
            ).first()
            reports = {m.sha256: latest_payload(conn, m.sha256, "anomalies") for m in mem}
            crop_props = {m.sha256: latest_payload(conn, m.sha256, "crop") for m in mem}
        body = json.loads(body_row.body) if body_row else {}
        probs = {i.get("image_id"): i.get("probability") for i in body.get("images", [])}
        out_members = []
        for m in mem:
            try:
                self.file_of(m)
                present = True
            except ConflictError:
                present = False
            rep = reports[m.sha256] or {}
            regions = [dict(_region(a), kind="anomaly") for a in rep.get("anomalies", [])]
            regions += [dict(_region(a), kind="uncertain") for a in rep.get("uncertain_regions", [])]
            cp = crop_props[m.sha256]
            out_members.append(
                {
                    "index": m.index,
                    "name": m.name,
                    "width": m.width,
                    "height": m.height,
                    "present": present,
                    "location": self.tracker.location_of(m.rel if m.state == "present" else None),
                    "p_winner": probs.get(m.sha256),
                    "regions": regions,
                    "crop": _crop_view(cp),
                }
            )
        winner = next((m.index for m in mem if m.sha256 == body.get("winner_id")), None)
        return {
            "set_id": set_id,
            "folder": Path(from_db_path(s.folder)).name,
            "status": s.status,
            "members": out_members,
            "proposal": {
                "winner": winner,
                "confidence": body.get("confidence"),
                "margin": body.get("margin"),
                "reasons": body.get("reasons", []),
                "uncertain": body.get("uncertain", False),
                "uncertain_reasons": body.get("uncertain_reasons", []),
            }
            if body
            else None,
            "tags": list(self.ctx.cfg.review.tags),
        }

    # ---- actions ------------------------------------------------------------------------------
    def act(self, set_id: str, req: Mapping[str, Any]) -> dict[str, Any]:
        """approve / crop / reject, checked in full before anything moves."""
        mem = self.members(set_id)
        action = req.get("action")
        if action not in ACTIONS:
            raise ReviewError(None, f"action must be one of {ACTIONS}")
        unknown = set(req) - {"action", "winner", "crop_box", "reject", "region_labels"}
        if unknown:
            raise ReviewError(None, f"unknown fields {sorted(unknown)}")
        winner = self._winner(mem, req.get("winner"), required=action != "reject")
        rejects = self._rejects(mem, req.get("reject"), winner)
        if action == "reject" and not rejects:
            raise ReviewError(None, "reject needs at least one member in 'reject'")
        box = None
        if action == "crop":
            assert winner is not None
            box = self._crop_box(winner, req.get("crop_box"))
        try:
            labels = parse_request(req.get("region_labels"), {m.name: (m.width, m.height) for m in mem})
        except RegionLabelError as e:
            raise ReviewError(None, str(e)) from e
        plan: list[tuple[MemberRow, Path]] = []
        if winner is not None:
            area = "to_crop" if action == "crop" else "approved"
            plan.append((winner, self.ctx.cfg.path(area)))
        for m, tags in rejects:
            plan.append((m, self.ctx.cfg.path("rejected").joinpath(*tags)))
        for m, _dst in plan:
            self._in_set_folder(set_id, m)
        action_id = ACTION_PREFIX + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + set_id[:12]
        moved = self._move_all(set_id, action_id, action, plan)
        crop_file = None
        if box is not None and winner is not None:
            try:
                crop_file = self._write_crop(action_id, winner, moved[0][2], box)
            except (OSError, ValueError) as e:  # the image would not decode or the disk refused
                self._roll_back(action_id, moved)
                raise ConflictError(None, f"nothing changed: cannot write the crop ({e})") from e
        line = self._record(set_id, labels, action_id)
        return {
            "ok": True,
            "action_id": action_id,
            "moved": [{"name": m.name, "to": self.ctx.rel(dst)} for m, _src, dst in moved],
            "crop_file": crop_file,
            "line": line.to_dict() if line else None,
        }

    def undo(self) -> dict[str, Any]:
        """Take back the page's last action that still has moves in force: the files go back
        (journaled), its crop file goes, and a superseding line says what now stands."""
        with self.ctx.store.read() as conn:
            row = conn.execute(
                select(journal.c.batch_id, journal.c.sha256)
                .where(journal.c.batch_id.like(ACTION_PREFIX + "%"), journal.c.state == "done")
                .order_by(journal.c.id.desc())
                .limit(1)
            ).first()
            if row is None:
                raise NotFoundError(None, "nothing to undo")
            set_id = conn.execute(select(set_members.c.set_id).where(set_members.c.sha256 == row.sha256)).scalar_one()
            crop_info = records.get_state(conn, f"review_crop:{row.batch_id}")
        action_id = str(row.batch_id)
        if crop_info:
            self._remove_crop(crop_info)
        back = self.ctx.fileops.undo_batch(action_id)
        for res in back:  # each undo move went from where the action put the file (src) back (dst)
            self._relocated(res.src, res.dst)
        line = self._record(set_id, (), "undo:" + action_id)
        return {
            "ok": True,
            "undone": action_id,
            "set_id": set_id,
            "restored": [self.ctx.rel(r.dst) for r in back],
            "problems": list(self.ctx.fileops.last_problems),
            "line": line.to_dict() if line else None,
        }

    # ---- checks -------------------------------------------------------------------------------
    def _winner(self, mem: list[MemberRow], idx: object, *, required: bool) -> MemberRow | None:
        if idx is None and not required:
            return None
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(mem):
            raise ReviewError(None, f"winner must be a member index 0..{len(mem) - 1}")
        return mem[idx]

    def _rejects(
        self, mem: list[MemberRow], data: object, winner: MemberRow | None
    ) -> list[tuple[MemberRow, tuple[str, ...]]]:
        if data is None:
            return []
        if not isinstance(data, dict):
            raise ReviewError(None, "reject must map member indices to tag lists")
        out = []
        for k, tags in data.items():
            if not (isinstance(k, str) and k.isdigit() and int(k) < len(mem)):
                raise ReviewError(None, f"reject: {k!r} is not a member index")
            m = mem[int(k)]
            if winner is not None and m.index == winner.index:
                raise ReviewError(None, "the winner cannot also be rejected")
            if not isinstance(tags, list) or len(tags) > 8 or not all(_tag_ok(t) for t in tags):
                raise ReviewError(None, f"reject[{k}]: tags must be a short list of names without '/'")
            out.append((m, tuple(dict.fromkeys(tags))))
        return out

    def _crop_box(self, winner: MemberRow, data: object) -> cropbox.IntBox:
        if data is None:
            with self.ctx.store.read() as conn:
                cp = latest_payload(conn, winner.sha256, "crop")
            best = (cp or {}).get("best")
            if not best:
                raise ReviewError(None, f"{winner.name} has no proposed crop; draw one (E)")
            data = {k: int(best["box"][k]) for k in ("x", "y", "w", "h")}
        try:
            return cropbox.parse(winner.width, winner.height, data)
        except cropbox.CropBoxError as e:
            raise ReviewError(None, f"crop_box: {e}") from e

    def _in_set_folder(self, set_id: str, m: MemberRow) -> None:
        p = self.file_of(m)
        with self.ctx.store.read() as conn:
            folder = conn.execute(select(sets.c.folder).where(sets.c.id == set_id)).scalar_one()
        if p.parent != self.ctx.abs(folder):
            raise ConflictError(None, f"{m.name} was already moved out of its set folder (now {self.ctx.rel(p)})")

    # ---- doing --------------------------------------------------------------------------------
    def _move_all(
        self, set_id: str, action_id: str, action: str, plan: list[tuple[MemberRow, Path]]
    ) -> list[tuple[MemberRow, Path, Path]]:
        """Every move or none: a failure moves the earlier ones back (journaled too)."""
        done: list[tuple[MemberRow, Path, Path]] = []
        try:
            for m, folder in plan:
                src = self.ctx.abs(m.rel)
                dst = unique_destination(folder / src.name)
                self.ctx.fileops.move(src, dst, sha256=m.sha256, batch_id=action_id, note=f"review {action} {set_id}")
                self._relocated(src, dst)
                done.append((m, src, dst))
        except BestshotError as e:
            self._roll_back(action_id, done)
            raise ConflictError(e.path, f"nothing changed: {e.reason}") from e
        return done

    def _roll_back(self, action_id: str, done: list[tuple[MemberRow, Path, Path]]) -> None:
        for m, src, dst in reversed(done):
            self.ctx.fileops.move(dst, src, sha256=m.sha256, batch_id=f"rollback:{action_id}", note="not completed")
            self._relocated(dst, src)
        with self.ctx.store.write() as conn:  # so undo never picks an action that did not happen
            conn.execute(
                update(journal)
                .where(journal.c.batch_id == action_id, journal.c.state == "done")
                .values(state="undone", note="rolled back: the action did not complete")
            )

    def _relocated(self, src: Path, dst: Path) -> None:
        st = dst.stat()
        with self.ctx.store.read() as conn:
            sha = conn.execute(select(images.c.sha256).where(images.c.path == self.ctx.rel(src))).scalar()
        if sha is None:
            return
        # The path index, the image row and the observation (what tracker.on_move records) in
        # one transaction: one commit per move instead of two.
        with self.ctx.store.write() as conn:
            records.relocate(conn, self.ctx.rel(src), self.ctx.rel(dst), sha, st.st_size, st.st_mtime_ns)
            set_id = conn.execute(select(set_members.c.set_id).where(set_members.c.sha256 == sha)).scalar()
            location = self.tracker.location_of(self.ctx.rel(dst))
            records.upsert(
                conn, observations, {"sha256": sha, "location": location, "moved_at": time.time()}, ["sha256"]
            )
        if set_id is not None:
            self.tracker.dirty.add(set_id)

    def _write_crop(self, action_id: str, winner: MemberRow, source: Path, box: cropbox.IntBox) -> str:
        """The crop, in the source's format, as a new file in cropped/ (never over another), and
        its crops row with the exact box, so the watcher never has to recover it from pixels."""
        with Image.open(source) as im:
            fmt = _SAVE_FORMAT.get(im.format or winner.format.upper(), "PNG")
            kwargs: dict[str, Any] = {}
            if im.info.get("icc_profile"):
                kwargs["icc_profile"] = im.info["icc_profile"]
            if fmt == "JPEG":
                kwargs.update(quality=95, subsampling=0)
            elif fmt == "WEBP":
                kwargs.update(lossless=True)
            cut = im.crop((box.x, box.y, box.x + box.w, box.y + box.h))
            if fmt == "JPEG" and cut.mode not in ("RGB", "L", "CMYK"):
                cut = cut.convert("RGB")
            buf = io.BytesIO()
            cut.save(buf, format=fmt, **kwargs)
        data = buf.getvalue()
        tmp_dir = self.ctx.cfg.path("sidecar") / "review_tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{action_id}{source.suffix}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        dst = unique_destination(self.ctx.cfg.path("cropped") / source.name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(tmp, dst)  # refuses an existing name: never overwrites
        os.unlink(tmp)
        crop_sha = sha256_file(dst)
        rel = self.ctx.rel(dst)
        match = {
            "box": {"x": box.x, "y": box.y, "w": box.w, "h": box.h},
            "quality": 1.0,
            "exact": True,
            "scale": [1.0, 1.0],
            "aspect_error": 0.0,
            "method": "exact",
            "source_size": [winner.width, winner.height],
        }
        st = dst.stat()
        with self.ctx.store.write() as conn:
            records.upsert(
                conn,
                crops,
                {
                    "crop_sha256": crop_sha,
                    "file": rel,
                    "source_sha256": winner.sha256,
                    "match": json.dumps(match),
                    "observed_at": time.time(),
                },
                ["crop_sha256"],
            )
            records.upsert_file(conn, rel, crop_sha, st.st_size, st.st_mtime_ns)
            records.put_state(conn, f"review_crop:{action_id}", {"file": rel, "sha256": crop_sha})
        return rel

    def _remove_crop(self, info: Mapping[str, Any]) -> None:
        """Undo of a crop: forget its row; delete the file only while it is still our own bytes."""
        p = self.ctx.abs(str(info["file"]))
        with self.ctx.store.write() as conn:
            conn.execute(delete(crops).where(crops.c.crop_sha256 == info["sha256"]))
            records.forget_file(conn, str(info["file"]))
        if p.is_file() and not p.is_symlink() and sha256_file(p) == info["sha256"]:
            p.unlink()

    def _record(self, set_id: str, labels: tuple[RegionLabel, ...], action_id: str) -> SessionLine | None:
        """The set's line for what the files now say, decided at once (no waiting for the
        watcher's closure rules: the user said so), carrying the region labels forward."""
        now = datetime.now(UTC)
        with self.ctx.store.read() as conn:
            state = self.tracker.state_of(conn, set_id, {})
            last_row = conn.execute(
                select(decisions).where(decisions.c.set_id == set_id).order_by(decisions.c.id.desc()).limit(1)
            ).first()
        last = parse_line(last_row.line, 1) if last_row else None
        kept = merge(last.region_labels if last else (), labels)
        at_once = self.ctx.cfg.labels.model_copy(update={"close_after_seconds": 1e-6, "close_after_other_sets": None})
        verdict = decide(state, at_once, now + timedelta(seconds=1))
        decision: Decision | None = None
        if isinstance(verdict, Decision):
            decision = dataclasses.replace(verdict, closed="review")  # type: ignore[arg-type]
            line = decision.to_line(previous=last)
            ns = {**line.bestshot, "source": "review", "closed": "review", "action": action_id}
            line = dataclasses.replace(line, ts=now, bestshot=ns, region_labels=kept)
        elif last is not None and not last.retracted:
            line = retraction(state, last, now)
            ns = {**line.bestshot, "source": "review", "action": action_id}
            line = dataclasses.replace(line, ts=now, bestshot=ns, region_labels=kept)
        else:
            return None
        self.tracker.record(set_id, line, decision, "review", last_row.id if last_row else None)
        return line


def _region(a: Mapping[str, Any]) -> dict[str, Any]:
    b = a.get("box") or {}
    return {
        "tag": a.get("tag"),
        "box": {k: float(b.get(k, 0)) for k in ("x", "y", "w", "h")},
        "score": a.get("score"),
    }


def _crop_view(cp: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not cp:
        return None
    return {
        "verdict": cp.get("verdict"),
        "reason": cp.get("reason"),
        "best": (cp.get("best") or {}).get("box"),
        "fallbacks": [f.get("box") for f in cp.get("fallbacks") or []],
    }
