"""Preview JPEG for Finder: the image downscaled, proposed crop solid, fallbacks dashed and thinner,
anomalies red and uncertain hands orange, each labelled with its tag."""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw

from core.anomaly.model import AnomalyReport
from core.crop.proposal import CropProposal

GREEN = (40, 220, 60)
YELLOW = (250, 210, 40)
RED = (235, 40, 40)
ORANGE = (255, 150, 20)
VERDICT_COLOUR = {"crop": GREEN, "no_crop_needed": GREEN, "review": ORANGE, "reject": RED}


def _dashed_rect(
    draw: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    colour: tuple[int, int, int],
    width: int,
    dash: int,
) -> None:
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min(1.0, (i + 1) / steps)
            draw.line(
                [(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                fill=colour,
                width=width,
            )


def render_preview(
    rgb: np.ndarray,
    proposal: CropProposal,
    report: AnomalyReport | None = None,
    *,
    max_side: int = 1024,
    quality: int = 85,
) -> bytes:
    """JPEG bytes of `rgb` (HxWx3 uint8, original size) with the proposal drawn on it."""
    im = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    scale = min(1.0, max_side / max(im.size))
    if scale < 1.0:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    # Dim what the crop removes so the kept frame reads at a glance in Finder's thumbnail.
    b = proposal.best
    if proposal.verdict in ("crop", "review") and (b.w, b.h) != (proposal.width, proposal.height):
        shade = Image.new("L", im.size, 110)
        ImageDraw.Draw(shade).rectangle(_scaled((b.x, b.y, b.x + b.w, b.y + b.h), scale), fill=255)
        im = Image.composite(im, Image.new("RGB", im.size, (0, 0, 0)), shade)
    draw = ImageDraw.Draw(im)
    line = max(2, round(max(im.size) / 250))

    def label(xy: tuple[float, float], text: str, colour: tuple[int, int, int]) -> None:
        x, y = xy
        tb = draw.textbbox((x, y), text)
        draw.rectangle((tb[0] - 1, tb[1] - 1, tb[2] + 1, tb[3] + 1), fill=(0, 0, 0))
        draw.text((x, y), text, fill=colour)

    for a, colour in _regions(report, proposal):
        draw.rectangle(_scaled(a[0], scale), outline=colour, width=max(1, line // 2 + 1))
        label((a[0][0] * scale + 2, a[0][1] * scale + 2), a[1], colour)
    for fb in proposal.fallbacks:
        _dashed_rect(draw, _scaled((fb.x, fb.y, fb.x + fb.w, fb.y + fb.h), scale), YELLOW, max(1, line // 2), 4 * line)
    colour = VERDICT_COLOUR.get(proposal.verdict, GREEN)
    draw.rectangle(_scaled((b.x, b.y, b.x + b.w, b.y + b.h), scale), outline=colour, width=line)
    label((4, 4), f"{proposal.verdict}: {proposal.reason}"[:120], colour)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _scaled(box: tuple[float, float, float, float], scale: float) -> tuple[float, float, float, float]:
    return box[0] * scale, box[1] * scale, box[2] * scale - 1, box[3] * scale - 1


def _regions(
    report: AnomalyReport | None, proposal: CropProposal
) -> Iterable[tuple[tuple[tuple[float, float, float, float], str], tuple[int, int, int]]]:
    if report is not None:
        for a in report.anomalies:
            yield ((a.box.x, a.box.y, a.box.x2, a.box.y2), a.tag), RED
        for a in report.uncertain_regions:
            yield ((a.box.x, a.box.y, a.box.x2, a.box.y2), a.tag), ORANGE
        return
    for t in proposal.targets:
        bx = t["box"]
        colour = RED if t["kind"] == "anomaly" else ORANGE
        yield ((bx["x"], bx["y"], bx["x"] + bx["w"], bx["y"] + bx["h"]), t["tag"]), colour
