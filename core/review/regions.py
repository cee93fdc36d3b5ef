"""Region labels: what the user said about one region of one image on the review page.

- `not_anomaly` on a flagged box: the cue was wrong there (a kept outcome for its cue);
- `anomaly` on a flagged box: the cue was right (a removed outcome);
- `anomaly` on a box the user drew: something no cue flagged, with the user's tag.

They travel in the session line's optional `region_labels` field and teach the anomaly
calibration (per cue, by matching a label to the report's region by overlap) and the learned
hand model (per hand, by overlap), which image-level tags cannot: they say *which* hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from core.anomaly.model import Anomaly, AnomalyReport
from core.sidecar_types import Box

Label = Literal["anomaly", "not_anomaly"]
Origin = Literal["flagged", "drawn"]
LABELS: tuple[Label, ...] = ("anomaly", "not_anomaly")
ORIGINS: tuple[Origin, ...] = ("flagged", "drawn")
MATCH_IOU = 0.5  # a label speaks for a flagged region it overlaps this much
HAND_IOU = 0.3  # ...and for a hand box (hand boxes are padded, labels drawn tighter)
HAND_INSIDE = 0.6  # or when most of the label lies inside the hand box
MAX_LABELS = 64
MAX_TAG_LEN = 64


class RegionLabelError(ValueError):
    """A region label that is not valid; the message says which one and why."""


@dataclass(frozen=True)
class RegionLabel:
    image: str  # file name, one of the line's images
    box: Box  # whole pixels of that image
    tag: str
    label: Label
    origin: Origin

    def to_dict(self) -> dict[str, Any]:
        b = self.box
        return {
            "image": self.image,
            "box": {"x": int(b.x), "y": int(b.y), "w": int(b.w), "h": int(b.h)},
            "tag": self.tag,
            "label": self.label,
            "origin": self.origin,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RegionLabel:
        """From data the session schema has already validated."""
        return cls(str(d["image"]), Box.from_dict(d["box"]), str(d["tag"]), d["label"], d["origin"])


def _int(v: object, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise RegionLabelError(f"{what} must be a whole number of pixels")
    return v


def parse_request(data: object, sizes: Mapping[str, tuple[int, int]]) -> tuple[RegionLabel, ...]:
    """Labels sent by the page: a list of {image, box, tag, label, origin}; `sizes` maps each of
    the set's file names to its (width, height). Every box must lie inside its image."""
    if data is None:
        return ()
    if not isinstance(data, list) or len(data) > MAX_LABELS:
        raise RegionLabelError(f"region_labels must be a list of at most {MAX_LABELS}")
    out = []
    for i, d in enumerate(data):
        where = f"region_labels[{i}]"
        if not isinstance(d, dict) or set(d) != {"image", "box", "tag", "label", "origin"}:
            raise RegionLabelError(f"{where}: needs exactly image, box, tag, label, origin")
        if d["image"] not in sizes:
            raise RegionLabelError(f"{where}: image is not a member of this set")
        if d["label"] not in LABELS or d["origin"] not in ORIGINS:
            raise RegionLabelError(f"{where}: label must be one of {LABELS}, origin one of {ORIGINS}")
        tag = d["tag"]
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG_LEN or "/" in tag:
            raise RegionLabelError(f"{where}: tag must be a short non-empty name without '/'")
        box = d["box"]
        if not isinstance(box, dict) or set(box) != {"x", "y", "w", "h"}:
            raise RegionLabelError(f"{where}: box needs exactly x, y, w, h")
        x, y, w, h = (_int(box[k], f"{where}.box.{k}") for k in ("x", "y", "w", "h"))
        width, height = sizes[d["image"]]
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
            raise RegionLabelError(f"{where}: box is not inside the {width}x{height} image")
        if d["origin"] == "drawn" and d["label"] != "anomaly":
            raise RegionLabelError(f"{where}: a drawn box marks a missed anomaly (label 'anomaly')")
        out.append(RegionLabel(d["image"], Box(x, y, w, h), tag.strip(), d["label"], d["origin"]))
    return tuple(out)


def merge(older: Iterable[RegionLabel], newer: Iterable[RegionLabel]) -> tuple[RegionLabel, ...]:
    """Later labels replace earlier ones for the same image and (nearly) the same box."""
    out = list(older)
    for n in newer:
        out = [o for o in out if not (o.image == n.image and o.box.iou(n.box) >= MATCH_IOU)]
        out.append(n)
    return tuple(out)


def _match(region: Anomaly, labels: Sequence[RegionLabel]) -> RegionLabel | None:
    best = max(labels, key=lambda lab: lab.box.iou(region.box), default=None)
    return best if best is not None and best.box.iou(region.box) >= MATCH_IOU else None


def split_report(
    report: AnomalyReport, labels: Sequence[RegionLabel]
) -> tuple[list[tuple[Anomaly, bool]], AnomalyReport]:
    """The flagged regions (kept and suppressed) a label speaks for, each with `removed` (True
    when the user said anomaly), and the report without them for the decision-level rules."""
    if not labels:
        return [], report
    labelled: list[tuple[Anomaly, bool]] = []
    rest: dict[str, list[Anomaly]] = {"anomalies": [], "suppressed": []}
    for key, regions in (("anomalies", report.anomalies), ("suppressed", report.suppressed)):
        for a in regions:
            lab = _match(a, labels)
            if lab is None:
                rest[key].append(a)
            else:
                labelled.append((a, lab.label == "anomaly"))
    return labelled, replace(report, anomalies=rest["anomalies"], suppressed=rest["suppressed"])


def hand_overrides(
    boxes: Sequence[Box], labels: Sequence[RegionLabel], base: Sequence[bool | None]
) -> list[bool | None]:
    """Per hand: True (the user marked an anomaly on it), False (said a flagged box on it is not
    one), else the decision-level label in `base`. An anomaly mark wins over a not-anomaly one."""
    out = list(base)
    for i, hb in enumerate(boxes):
        on_hand = [
            lab
            for lab in labels
            if lab.box.iou(hb) >= HAND_IOU
            or (lab.box.w * lab.box.h > 0 and lab.box.intersection(hb) / (lab.box.w * lab.box.h) >= HAND_INSIDE)
        ]
        if any(lab.label == "anomaly" for lab in on_hand):
            out[i] = True
        elif on_hand:
            out[i] = False
    return out
