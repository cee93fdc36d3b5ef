"""Run every cue over one image's sidecars and decide what is anomalous or uncertain.

Every person counts: hands are attached to their person's pose wrist (the one whose crop found
them, else closest pair first), and a face no pose covers is a person whose hands and limbs
nobody checked (`person_unchecked`, uncertain, with where the body can be). The person's face and
shoulders give the hand its expected size. A pose wrist that is clearly visible but has no hand
on it is a hand the detector could not read (typical of malformed hands): the image is
`uncertain`, never clean, and the region is reported so a crop can avoid it. So is a detected
hand whose image and world landmarks contradict each other (`core.anomaly.world`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.anomaly.geometry import clip_box, dist, inside_fraction, points_box
from core.anomaly.hands import HandContext, hand_cues, palm_scale, points_3d
from core.anomaly.limbs import PoseView, limb_cues
from core.anomaly.model import Anomaly, AnomalyReport, evidence, excess_score
from core.anomaly.scorer import GeometricScorer, RegionScorer
from core.anomaly.settings import AnomalySettings
from core.anomaly.world import world_cues
from core.persons import body_region, unposed_faces
from core.sidecar_types import POSE, Box, Face, Hand, Pose, SubjectMask

SIDES = ("left", "right")


@dataclass(frozen=True)
class HandSuspicion:
    """The learned hand model's reading of one image: a probability per hand (None where the hand
    has no embedding) and the model version, for the evidence."""

    probabilities: Sequence[float | None]
    model: str


@dataclass
class _Wrist:
    pose: int
    side: str
    xy: np.ndarray
    visibility: float
    in_frame: bool
    elbow: np.ndarray | None
    forearm: float  # 2D length, or an estimate from the shoulders when the elbow is hidden
    hand_points: np.ndarray  # wrist + pose pinky/index/thumb points
    min_visibility: float  # lowest visibility among those points


def detect_anomalies(
    hands: Sequence[Hand],
    poses: Sequence[Pose],
    faces: Sequence[Face],
    width: int,
    height: int,
    settings: AnomalySettings,
    *,
    subject: SubjectMask | None = None,
    scorer: RegionScorer | None = None,
    rgb: np.ndarray | None = None,
    hand_world: Sequence[np.ndarray | None] | None = None,
    hand_suspicion: HandSuspicion | None = None,
) -> AnomalyReport:
    """`hand_world`: each hand's world landmarks (`core.anomaly.world.hand_world_from_payload`),
    parallel to `hands`; without them the image/world consistency check does not run and the
    reasons say so. `hand_suspicion`: the learned hand model's probability per hand that the user
    would cut it away (core.anomaly.hand_model); a hand at or above
    `hand_model.flag_probability` is uncertain (`hand_suspect`), whatever its geometry says."""
    if hand_world is not None and len(hand_world) != len(hands):
        raise ValueError(f"hand_world has {len(hand_world)} entries for {len(hands)} hands")
    if hand_suspicion is not None and len(hand_suspicion.probabilities) != len(hands):
        raise ValueError(f"hand_suspicion has {len(hand_suspicion.probabilities)} entries for {len(hands)} hands")
    scorer = scorer or GeometricScorer()
    us = settings.uncertain
    reasons: list[str] = []
    unread = sum(1 for i in range(len(hands)) if hand_world is None or hand_world[i] is None)
    if unread:
        reasons.append(
            f"{unread} hand(s) without world landmarks (hands sidecar before version 2, or not "
            "passed in): image/world consistency not checked"
        )
    found: list[Anomaly] = []
    uncertain_regions: list[Anomaly] = []

    views = [PoseView(p, width, height, settings.limb.min_visibility) for p in poses]
    face_of_pose = _faces_for_poses(views, faces)
    scales = [v.body_scale(f.box.w if f is not None else None) for v, f in zip(views, face_of_pose, strict=True)]
    wrists = _wrists(views, scales, width, height)
    owner = _assign_hands(hands, wrists, us.match_max_forearms)

    for i, hand in enumerate(hands):
        w = owner.get(i)
        ctx = _context(w, face_of_pose, faces, scales)
        box = clip_box(hand.box(settings.hand_box_pad), width, height)
        if box is None:
            reasons.append(f"hand:{i}: entirely outside the frame, ignored")
            continue
        cues, notes = hand_cues(hand, i, ctx, width, height, settings, box)
        found += cues
        reasons += notes
        unsure = _unreliable_hand(
            hand, i, w, box, settings, width, height, hand_world[i] if hand_world is not None else None
        )
        if not unsure:
            unsure = _interacting_hand(hand, i, w, wrists, faces, box, settings)
        if not unsure and hand_suspicion is not None:
            unsure = _suspect_hand(hand_suspicion, i, box, settings)
        uncertain_regions += unsure
        reasons += [
            f"hand:{i}: {u.evidence['measurement']} {u.evidence['value']} vs {u.evidence['threshold']}: "
            "its landmarks cannot be trusted"
            for u in unsure
        ]

    found += _extra_hands(hands, owner, settings, width, height)

    # A person with no hand found at all has not had their hands checked: there even a wrist the
    # pose model is unsure of is where a hand may be.
    handless = {w.pose for w in wrists} - {w.pose for w in owner.values()}
    for w in wrists:
        if any(o is w for o in owner.values()):
            continue
        need = us.handless_wrist_min_visibility if w.pose in handless else us.wrist_min_visibility
        if not w.in_frame or w.visibility < need:
            continue
        region = _hand_region(w, width, height)
        if region is None:
            continue
        if subject is not None and _mask_mean(subject, region) < us.background_mask_max:
            reasons.append(f"pose:{w.pose}:{w.side}_wrist lies on background per the subject mask; not a hand")
            continue
        uncertain_regions.append(
            Anomaly(
                "hand_undetected",
                region,
                w.visibility,
                evidence(
                    "pose_wrist_visibility", w.visibility, need, side=w.side, person_without_hands=w.pose in handless
                ),
                f"pose:{w.pose}:{w.side}_hand",
            )
        )
        reasons.append(f"pose:{w.pose}: {w.side} wrist visible ({w.visibility:.2f}) but no hand detected there")

    for j, pose in enumerate(poses):
        f = face_of_pose[j]
        cues, notes = limb_cues(pose, j, width, height, settings, f.box.w if f is not None else None)
        found += cues
        reasons += notes

    unposed = unposed_faces(faces, poses)
    if unposed:
        reasons.append(f"{len(unposed)} face(s) without a pose: those people's hands and limbs are unchecked")
        if us.unposed_faces_are_uncertain:
            uncertain_regions += [_unchecked_person(faces[i], i, width, height) for i in unposed]
    if subject is not None and us.unexplained_subject_min_fraction < 1.0:
        for k, box in enumerate(_unexplained_subject(subject, poses, faces, width, height, us)):
            uncertain_regions.append(
                Anomaly(
                    "person_unchecked",
                    box,
                    0.5,
                    evidence(
                        "subject_area_outside_people",
                        round(box.w * box.h / (width * height), 4),
                        us.unexplained_subject_min_fraction,
                    ),
                    f"subject:{k}",
                )
            )
            reasons.append(f"subject:{k}: part of the subject no pose or face accounts for: people nobody checked?")
    uncertain = bool(uncertain_regions)
    if not poses and not faces and not hands:
        reasons.append("no person detected (no pose, face or hand)")

    merged = _merge(found)
    scores = scorer.score(merged, rgb)
    kept: list[Anomaly] = []
    suppressed: list[Anomaly] = []
    for a, sc in zip(merged, scores, strict=True):
        ev = a.evidence if float(sc) == a.score else {**a.evidence, "cue_score": round(a.score, 4)}
        scored = dataclasses.replace(a, score=float(sc), evidence=ev)
        (kept if sc >= settings.min_score else suppressed).append(scored)
    for a in kept:
        ev = a.evidence
        reasons.append(f"{a.source}: {a.tag} ({ev['measurement']} {ev['value']} vs {ev['threshold']})")
    for a in suppressed:
        reasons.append(
            f"{a.source}: {a.tag} suppressed by the {scorer.name} scorer "
            f"({a.evidence.get('cue_score', a.score)} -> {a.score:.3f})"
        )
    return AnomalyReport(width, height, kept, uncertain_regions, uncertain, reasons, scorer.name, suppressed)


def _unchecked_person(face: Face, i: int, width: int, height: int) -> Anomaly:
    """A person seen by the face detector whom no pose covers: where their body can be."""
    region = body_region(face.box, width, height).box()
    return Anomaly(
        "person_unchecked",
        region,
        round(face.score, 4),
        evidence("face_without_pose", round(face.score, 4), 0.0, face_box=face.box.to_dict()),
        f"face:{i}",
    )


def hand_owners(
    hands: Sequence[Hand], poses: Sequence[Pose], faces: Sequence[Face], width: int, height: int, s: AnomalySettings
) -> dict[int, tuple[int, str]]:
    """Which person's hand each hand is, as `detect_anomalies` attaches them:
    hand index -> (pose index, "left" | "right"); hands on no pose are left out."""
    views = [PoseView(p, width, height, s.limb.min_visibility) for p in poses]
    face_of_pose = _faces_for_poses(views, faces)
    scales = [v.body_scale(f.box.w if f is not None else None) for v, f in zip(views, face_of_pose, strict=True)]
    owner = _assign_hands(hands, _wrists(views, scales, width, height), s.uncertain.match_max_forearms)
    return {i: (w.pose, w.side) for i, w in owner.items()}


def hand_contexts(
    hands: Sequence[Hand], poses: Sequence[Pose], faces: Sequence[Face], width: int, height: int, s: AnomalySettings
) -> list[HandContext]:
    """What the rest of the image says about each hand (its person's face, body scale, pose wrist
    and elbow, side), exactly as `detect_anomalies` gives it to the hand cues."""
    views = [PoseView(p, width, height, s.limb.min_visibility) for p in poses]
    face_of_pose = _faces_for_poses(views, faces)
    scales = [v.body_scale(f.box.w if f is not None else None) for v, f in zip(views, face_of_pose, strict=True)]
    owner = _assign_hands(hands, _wrists(views, scales, width, height), s.uncertain.match_max_forearms)
    return [_context(owner.get(i), face_of_pose, faces, scales) for i in range(len(hands))]


def _context(
    w: _Wrist | None, face_of_pose: Sequence[Face | None], faces: Sequence[Face], scales: Sequence[float | None]
) -> HandContext:
    pose_face = face_of_pose[w.pose] if w is not None else None
    face = pose_face if pose_face is not None else (faces[0] if len(faces) == 1 else None)
    return HandContext(
        face_width=face.box.w if face is not None and face.box.w > 1 else None,
        shoulder_width=scales[w.pose] if w is not None else None,
        pose_wrist=w.xy if w is not None else None,
        pose_elbow=w.elbow if w is not None else None,
        side=w.side if w is not None else None,
    )


def _suspect_hand(suspicion: HandSuspicion, i: int, box: Box, settings: AnomalySettings) -> list[Anomaly]:
    p = suspicion.probabilities[i]
    thr = settings.hand_model.flag_probability
    if p is None or p < thr:
        return []
    return [
        Anomaly(
            "hand_suspect",
            box,
            round(p, 4),
            evidence("learned_hand_probability", p, thr, model=suspicion.model),
            f"hand:{i}",
        )
    ]


def _interacting_hand(
    hand: Hand,
    i: int,
    own: _Wrist | None,
    wrists: list[_Wrist],
    faces: Sequence[Face],
    box: Box,
    settings: AnomalySettings,
) -> list[Anomaly]:
    """A hand in front of a face or on the other arm: occluded or interlocked, so plausible
    landmarks prove little (the model fits a whole hand to what it sees), and this is where
    generators fail most. Uncertain, so the user checks it; never an anomaly by itself."""
    us = settings.uncertain
    lm = hand.landmarks[:, :2]
    palm = float(np.linalg.norm(lm[0] - lm[9]))
    if palm <= 1.0:
        return []
    tight = hand.box(0.0)
    area = max(tight.w * tight.h, 1e-6)
    for f in faces:
        iw = max(0.0, min(tight.x2, f.box.x2) - max(tight.x, f.box.x))
        ih = max(0.0, min(tight.y2, f.box.y2) - max(tight.y, f.box.y))
        share = iw * ih / area
        if share >= us.hand_on_face_min:
            return [
                Anomaly(
                    "hand_low_confidence",
                    box,
                    round(share, 3),
                    evidence("hand_box_share_on_face", round(share, 3), us.hand_on_face_min),
                    f"hand:{i}",
                )
            ]
    centre = lm.mean(axis=0)
    for w in wrists:
        if w is own or w.elbow is None or w.visibility < settings.limb.min_visibility:
            continue
        if float(np.linalg.norm(w.xy - lm[0])) < palm:  # the pose's reading of this very hand
            continue
        d = _segment_distance(centre, w.elbow, w.xy) / palm
        if d <= us.hand_on_other_forearm_max:
            return [
                Anomaly(
                    "hand_low_confidence",
                    box,
                    round(1.0 - d / (2 * us.hand_on_other_forearm_max), 3),
                    evidence(
                        "distance_to_other_forearm_palms",
                        round(d, 3),
                        us.hand_on_other_forearm_max,
                        arm=f"pose:{w.pose}:{w.side}",
                    ),
                    f"hand:{i}",
                )
            ]
    return []


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def _faces_for_poses(views: list[PoseView], faces: Sequence[Face]) -> list[Face | None]:
    """The face whose box holds the pose's nose (or lies within a face width of it)."""
    out: list[Face | None] = []
    for v in views:
        nose = v.xy("nose")
        best, best_d = None, float("inf")
        for f in faces:
            c = np.array([f.box.x + f.box.w / 2, f.box.y + f.box.h / 2])
            d = dist(c, nose)
            if d < max(f.box.w, f.box.h) and d < best_d:
                best, best_d = f, d
        out.append(best)
    return out


def _wrists(views: list[PoseView], scales: list[float | None], width: int, height: int) -> list[_Wrist]:
    out: list[_Wrist] = []
    for j, v in enumerate(views):
        for side in SIDES:
            wr = v.xy(f"{side}_wrist")
            vis = float(v.p[POSE[f"{side}_wrist"], 3])
            el_vis = float(v.p[POSE[f"{side}_elbow"], 3])
            elbow = v.xy(f"{side}_elbow") if el_vis >= 0.5 else None
            scale = scales[j] or 0.0
            fore = dist(elbow, wr) if elbow is not None else 0.0
            # Forearms foreshortened towards the camera would shrink the search; a real forearm
            # is about 0.7 shoulder widths.
            fore = max(fore, 0.7 * scale)
            if fore <= 1.0:
                continue
            names = [f"{side}_{k}" for k in ("wrist", "pinky", "index", "thumb")]
            pts = np.stack([v.xy(n) for n in names])
            in_frame = 0 <= wr[0] < width and 0 <= wr[1] < height
            out.append(_Wrist(j, side, wr, vis, in_frame, elbow, fore, pts, min(v.visibility(n) for n in names)))
    return out


def _assign_hands(hands: Sequence[Hand], wrists: list[_Wrist], reach: float) -> dict[int, _Wrist]:
    """Hand index -> its pose wrist within `reach` forearms.

    A hand found in the crop around a pose's hand belongs to that hand. The others go
    closest pair first, one hand per wrist, so that in a group a hand near two people's wrists
    goes to the one whose own hand it is not taken by a nearer hand; hands left over (more hands
    than wrists) go to their nearest wrist, where `_extra_hands` counts them."""
    out: dict[int, _Wrist] = {}
    by_key = {(w.pose, w.side): w for w in wrists}
    for i, h in enumerate(hands):
        w = by_key.get((h.pose, h.side)) if h.pose is not None and h.side is not None else None
        # The pose sidecar may be newer than the hands one: trust the label only where it fits.
        if w is not None and dist(h.landmarks[0, :2], w.xy) / w.forearm <= reach:
            out[i] = w
    pairs = sorted(
        (dist(h.landmarks[0, :2], w.xy) / w.forearm, i, k)
        for i, h in enumerate(hands)
        if i not in out
        for k, w in enumerate(wrists)
    )
    taken = {id(w) for w in out.values()}
    for d, i, k in pairs:
        if d <= reach and i not in out and id(wrists[k]) not in taken:
            out[i] = wrists[k]
            taken.add(id(wrists[k]))
    for d, i, k in pairs:
        if d <= reach and i not in out:
            out[i] = wrists[k]
    return out


def _unreliable_hand(
    hand: Hand,
    i: int,
    w: _Wrist | None,
    box: Box,
    s: AnomalySettings,
    width: int,
    height: int,
    world: np.ndarray | None,
) -> list[Anomaly]:
    """Low landmark confidence where a hand is: a low detector score, the pose model's own hand
    points (wrist, pinky, index, thumb) centred elsewhere than the hand model's palm, or the hand
    model's image and world readings contradicting each other."""
    us = s.uncertain
    out: list[Anomaly] = []
    # A hand cut by the frame is extrapolated by both heads alike; only visible hands are checked.
    if world is not None and 1.0 - inside_fraction(hand.landmarks, width, height) <= s.hand.max_outside_fraction:
        out += world_cues(points_3d(hand, width), world, box, f"hand:{i}", us)
    if w is not None and w.min_visibility >= us.wrist_min_visibility:
        palm = hand.landmarks[[0, 5, 9, 13, 17], :2].mean(axis=0)
        off = dist(w.hand_points.mean(axis=0), palm) / palm_scale(hand.landmarks)
        if off > us.pose_hand_disagreement_max:
            out.append(
                Anomaly(
                    "hand_low_confidence",
                    box,
                    excess_score(off, us.pose_hand_disagreement_max, 2 * us.pose_hand_disagreement_max),
                    evidence("pose_vs_hand_palm_centre_palms", off, us.pose_hand_disagreement_max),
                    f"hand:{i}",
                )
            )
    if hand.score < us.hand_min_score:
        out.append(
            Anomaly(
                "hand_low_confidence",
                box,
                1.0 - hand.score,
                evidence("hand_detector_score", hand.score, us.hand_min_score),
                f"hand:{i}",
            )
        )
    return out


def _extra_hands(
    hands: Sequence[Hand], owner: dict[int, _Wrist], s: AnomalySettings, width: int, height: int
) -> list[Anomaly]:
    """Hands beyond `max_hands_per_person` on one pose: the ones farthest from a wrist."""
    out: list[Anomaly] = []
    by_pose: dict[int, list[tuple[float, int]]] = {}
    for i, w in owner.items():
        by_pose.setdefault(w.pose, []).append((dist(hands[i].landmarks[0, :2], w.xy) / w.forearm, i))
    for pose, items in by_pose.items():
        n = len(items)
        if n <= s.max_hands_per_person:
            continue
        for _, i in sorted(items)[s.max_hands_per_person :]:
            box = clip_box(hands[i].box(s.hand_box_pad), width, height)
            if box is not None:
                out.append(
                    Anomaly(
                        "limb_misaligned",
                        box,
                        excess_score(n, s.max_hands_per_person, s.max_hands_per_person + 2),
                        evidence("hands_per_person", n, s.max_hands_per_person, pose=pose),
                        f"hand:{i}",
                    )
                )
    return out


def _hand_region(w: _Wrist, width: int, height: int) -> Box | None:
    """Where the undetected hand is: the pose hand points grown to about a hand's size."""
    pts = w.hand_points
    centre = pts.mean(axis=0)
    # A hand is about 0.75 forearm long; the box spans 0.9 forearm around the points' centre.
    half = 0.45 * w.forearm
    return points_box(np.vstack([pts, centre - half, centre + half]), 0.0, width, height)


def _unexplained_subject(
    subject: SubjectMask, poses: Sequence[Pose], faces: Sequence[Face], width: int, height: int, us: Any
) -> list[Box]:
    """Blobs of the subject mask (which covers every person) that no pose and no face's body
    region reaches: people the detectors did not see."""
    m = subject.mask >= 0.5
    covered = np.zeros_like(m)
    sc = subject.scale
    boxes: list[Box] = [body_region(f.box, width, height).box() for f in faces]
    for p in poses:
        pts = p.landmarks[p.landmarks[:, 3] >= 0.3, :2]
        if len(pts) >= 3:
            b = points_box(pts, 0.0, width, height)
            if b is not None:
                pad = 0.15 * max(b.w, b.h)
                boxes.append(Box(b.x - pad, b.y - pad, b.w + 2 * pad, b.h + 2 * pad))
    for b in boxes:
        x0, y0 = max(0, int(b.x * sc)), max(0, int(b.y * sc))
        covered[y0 : max(y0, int(np.ceil(b.y2 * sc))), x0 : max(x0, int(np.ceil(b.x2 * sc)))] = True
    rest = (m & ~covered).astype(np.uint8)
    # Imported here: the part model and the ranker's features read hand contexts from this module,
    # and `bestshot status` (which loads the ranker for its chance line) must not load OpenCV.
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
    out: list[Box] = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area >= us.unexplained_subject_min_fraction * m.size:
            out.append(Box(x / sc, y / sc, w / sc, h / sc))
    return out


def _mask_mean(subject: SubjectMask, box: Box) -> float:
    m = subject.mask
    x0, y0 = int(box.x * subject.scale), int(box.y * subject.scale)
    x1, y1 = int(np.ceil(box.x2 * subject.scale)), int(np.ceil(box.y2 * subject.scale))
    patch = m[max(0, y0) : max(y0 + 1, y1), max(0, x0) : max(x0 + 1, x1)]
    return float(patch.mean()) if patch.size else 0.0


def _merge(found: list[Anomaly]) -> list[Anomaly]:
    """One anomaly per (region, tag): the strongest cue, the others listed in its evidence."""
    groups: dict[tuple[str, str], list[Anomaly]] = {}
    for a in found:
        groups.setdefault((a.source, a.tag), []).append(a)
    out: list[Anomaly] = []
    for items in groups.values():
        items.sort(key=lambda a: -a.score)
        best = items[0]
        if len(items) > 1:
            ev = dict(best.evidence)
            ev["also"] = [a.evidence for a in items[1:]]
            best = dataclasses.replace(best, evidence=ev)
        out.append(best)
    return out
