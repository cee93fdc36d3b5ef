"""The crop proposal: best window, fallbacks, verdict; stored as `labels/crops/<image>.crop.json`."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from core.anomaly.model import PERSON_TAGS, AnomalyReport
from core.crop.aspect import AspectPlan, aspect_error, plan_sizes
from core.crop.context import CropContext, Target, build_context
from core.crop.objective import Scores
from core.crop.search import Windows, grid, order, refine, score, select
from core.crop.settings import CropSettings
from core.sidecar_types import Face, Pose, SubjectMask

PROPOSAL_VERSION: Final = 1
# Grid windows kept (best first) as candidates for the fallbacks after refinement.
_POOL = 300
VERDICTS: Final = ("no_crop_needed", "crop", "review", "reject")


@dataclass(frozen=True)
class CropCandidate:
    x: int
    y: int
    w: int
    h: int
    score: float
    terms: dict[str, float]
    aspect_error: float
    removed: list[dict[str, Any]]
    residual: list[dict[str, Any]]
    heads_cut: int
    subject_kept: bool

    def box(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.box(),
            "score": round(self.score, 5),
            "terms": self.terms,
            "aspect_error": self.aspect_error,
            "removed": self.removed,
            "residual": self.residual,
            "heads_cut": self.heads_cut,
            "subject_kept": self.subject_kept,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CropCandidate:
        b = d["box"]
        return cls(
            int(b["x"]),
            int(b["y"]),
            int(b["w"]),
            int(b["h"]),
            float(d["score"]),
            dict(d["terms"]),
            float(d["aspect_error"]),
            list(d["removed"]),
            list(d["residual"]),
            int(d["heads_cut"]),
            bool(d["subject_kept"]),
        )


@dataclass(frozen=True)
class CropProposal:
    width: int
    height: int
    aspect: dict[str, Any]
    verdict: str
    reason: str
    best: CropCandidate
    fallbacks: list[CropCandidate] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PROPOSAL_VERSION,
            "image_size": [self.width, self.height],
            "aspect": self.aspect,
            "verdict": self.verdict,
            "reason": self.reason,
            "best": self.best.to_dict(),
            "fallbacks": [c.to_dict() for c in self.fallbacks],
            "targets": self.targets,
            "notes": self.notes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CropProposal:
        w, h = d["image_size"]
        return cls(
            int(w),
            int(h),
            dict(d["aspect"]),
            str(d["verdict"]),
            str(d["reason"]),
            CropCandidate.from_dict(d["best"]),
            [CropCandidate.from_dict(c) for c in d.get("fallbacks", [])],
            list(d.get("targets", [])),
            [str(n) for n in d.get("notes", [])],
        )

    @classmethod
    def from_json(cls, text: str) -> CropProposal:
        return cls.from_dict(json.loads(text))


def propose_crop(
    width: int,
    height: int,
    report: AnomalyReport | None,
    *,
    faces: Sequence[Face] = (),
    poses: Sequence[Pose] = (),
    subject: SubjectMask | None = None,
    settings: CropSettings | None = None,
    force: bool = False,
) -> CropProposal:
    """Propose an exact-aspect crop removing the report's anomalies (and uncertain hands).

    A crop is proposed only when a target is evidence of a defect (an anomaly, or an uncertain
    region tagged in `uncertain_evidence_tags`); regions that merely could not be checked keep
    the full frame, with verdict `review` and the crops that remove them as fallbacks.
    `force` searches even when nothing needs removing (benchmarks, manual crops).
    """
    s = settings or CropSettings()
    plan = plan_sizes(width, height, s)
    ctx = build_context(width, height, report, faces, poses, subject, s)
    aspect = _aspect_dict(plan)
    targets = [{**t.ref(), "box": {k: round(v, 1) for k, v in t.box.to_dict().items()}} for t in ctx.targets]
    notes = list(ctx.notes)
    full = score(plan, ctx, np.zeros(1, np.int64), np.zeros(1, np.int64), np.array([len(plan.sizes) - 1]), s)

    unchecked = sum(1 for a in report.uncertain_regions if a.tag in PERSON_TAGS) if report is not None else 0
    if not ctx.targets and not force:
        verdict, reason = _unchecked_review("no_crop_needed", "no anomaly or uncertain hand in frame", unchecked)
        return CropProposal(
            width, height, aspect, verdict, reason, _candidate(plan, ctx, full, 0, s), [], targets, notes
        )
    unchecked_only = not force and not any(_is_evidence(t, s) for t in ctx.targets)
    if plan.only_full_frame:
        notes.append(plan.note)
        best = _candidate(plan, ctx, full, 0, s)
        if unchecked_only:
            return CropProposal(width, height, aspect, "review", _unchecked_reason(ctx), best, [], targets, notes)
        verdict, reason = _verdict(best, ctx, s)
        if verdict != "no_crop_needed":
            verdict, reason = ("reject" if best.residual else verdict), f"{reason}; {plan.note}"
        verdict, reason = _unchecked_review(verdict, reason, unchecked)
        return CropProposal(width, height, aspect, verdict, reason, best, [], targets, notes)

    x, y, si = grid(plan, ctx, s)
    win = score(plan, ctx, x, y, si, s)
    ranked = order(win)[:_POOL]
    top = ranked[: s.refine_starts]
    refined = refine(plan, ctx, Windows(win.x[top], win.y[top], win.si[top], _take(win.scores, top)), s)
    best_grid = Windows(win.x[ranked], win.y[ranked], win.si[ranked], _take(win.scores, ranked))
    pool = _concat([refined, best_grid, full])
    picks = select(plan, pool, 1 + s.n_fallbacks, s.nms_iou)
    cands = [_candidate(plan, ctx, pool, i, s) for i in picks]
    if not plan.exact:
        notes.append(plan.note)
    if unchecked_only:
        # No evidence that the frame holds a defect, so no reason to pay a crop's cost in
        # composition: the full frame stands, and the crops that remove the unchecked regions are
        # there for the user who finds one bad.
        alts = [c for c in cands if c.removed and (c.w, c.h) != (width, height)][: s.n_fallbacks]
        best = _candidate(plan, ctx, full, 0, s)
        return CropProposal(width, height, aspect, "review", _unchecked_reason(ctx), best, alts, targets, notes)
    verdict, reason = _unchecked_review(*_verdict(cands[0], ctx, s), unchecked)
    return CropProposal(width, height, aspect, verdict, reason, cands[0], cands[1:], targets, notes)


def _is_evidence(t: Target, s: CropSettings) -> bool:
    """Does this target say the image has a defect (not merely that a region went unchecked)?"""
    return t.kind == "anomaly" or t.tag in s.uncertain_evidence_tags


def _unchecked_reason(ctx: CropContext) -> str:
    tags = ", ".join(sorted({t.tag for t in ctx.targets}))
    return (
        f"{len(ctx.targets)} region(s) could not be checked ({tags}): check by eye; "
        "no crop proposed without evidence of a defect (fallbacks remove them)"
    )


def _unchecked_review(verdict: str, reason: str, unchecked: int) -> tuple[str, str]:
    """People nobody could check cannot be cropped away, and nothing says their hands and limbs
    are fine: a crop that would otherwise pass (or no crop at all) is for the user to check."""
    if not unchecked or verdict not in ("no_crop_needed", "crop"):
        return verdict, reason
    return "review", f"{reason}; {unchecked} person(s) whose hands and limbs could not be checked: check by eye"


def _aspect_dict(plan: AspectPlan) -> dict[str, Any]:
    return {
        "ratio": [plan.a, plan.b],
        "exact": plan.exact,
        "min_error": float(plan.min_error) if np.isfinite(plan.min_error) else None,
        "min_error_size": list(plan.min_error_size) if plan.min_error_size else None,
        "note": plan.note,
    }


def _take(sc: Scores, idx: np.ndarray) -> Scores:
    return Scores(*(getattr(sc, f.name)[idx] for f in dataclasses.fields(sc)))


def _concat(parts: list[Windows]) -> Windows:
    sc = Scores(*(np.concatenate([getattr(p.scores, f.name) for p in parts]) for f in dataclasses.fields(Scores)))
    return Windows(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.si for p in parts]),
        sc,
    )


def _candidate(plan: AspectPlan, ctx: CropContext, win: Windows, i: int, s: CropSettings) -> CropCandidate:
    x, y = int(win.x[i]), int(win.y[i])
    w, h = int(plan.sizes[win.si[i], 0]), int(plan.sizes[win.si[i], 1])
    removed: list[dict[str, Any]] = []
    residual: list[dict[str, Any]] = []
    for t in ctx.targets:
        b = t.box
        ix = max(0.0, min(x + w, b.x2) - max(x, b.x))
        iy = max(0.0, min(y + h, b.y2) - max(y, b.y))
        frac = ix * iy / max(b.w * b.h, 1e-9)
        (residual if frac > s.removed_max_overlap else removed).append({**t.ref(), "inside": round(frac, 4)})
    sc = win.scores
    return CropCandidate(
        x,
        y,
        w,
        h,
        float(sc.objective[i]),
        sc.terms(i),
        float(aspect_error(w, h, ctx.width, ctx.height)),
        removed,
        residual,
        int(sc.heads_cut[i]),
        not bool(sc.subject_lost[i]),
    )


def _verdict(best: CropCandidate, ctx: CropContext, s: CropSettings) -> tuple[str, str]:
    anomalies = [r for r in best.residual if r["kind"] == "anomaly"]
    uncertain = [r for r in best.residual if r["kind"] == "uncertain"]
    if not ctx.targets:
        return "no_crop_needed", "no anomaly or uncertain hand in frame"
    if anomalies:
        tags = ", ".join(sorted({r["tag"] for r in anomalies}))
        return "reject", f"no {ctx_ratio(ctx)} crop removes every anomaly ({tags} remain)"
    if best.heads_cut:
        return "reject", "removing the anomalies would cut the head (eyes/forehead)"
    if not best.subject_kept:
        return "reject", (
            f"removing the anomalies keeps only {best.terms['saliency_inside']:.0%} of the subject "
            f"(min_subject_kept {s.min_subject_kept:.0%})"
        )
    if uncertain:
        what = "anomalies removed" if best.removed else "nothing removable"
        return "review", f"{what}; {len(uncertain)} uncertain hand region(s) remain in frame: check by eye"
    return "crop", f"removes {len(best.removed)} region(s), keeps {best.terms['saliency_inside']:.0%} of the subject"


def ctx_ratio(ctx: CropContext) -> str:
    g = math.gcd(ctx.width, ctx.height)
    return f"{ctx.width // g}:{ctx.height // g}"
