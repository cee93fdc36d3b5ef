"""The root's folders, and the check that none of them leads out of the root.

Kept apart from daemon.app so that `status` and `doctor` can use it without importing the
extractor registry (and with it torch and mediapipe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Config

FOLDERS = (
    "inbox",
    "raw",
    "approved",
    "to_crop",
    "cropped",
    "rejected",
    "review_queue",
    "sidecar",
    "labels",
    "models",
    "logs",
)


def area_problems(cfg: Config) -> list[tuple[str, str]]:
    """(folder name, reason) for each folder of the layout that resolves outside the root, e.g.
    `raw -> /elsewhere`: images filed there would leave the tree the user pointed bestshot at."""
    root = cfg.root.resolve()
    out = []
    for name in FOLDERS:
        p = cfg.path(name)
        if not p.is_relative_to(cfg.root):
            continue  # configured elsewhere on purpose; only a link out of the root is a trap
        real = p.resolve()
        if real != root and root not in real.parents:
            out.append(
                (
                    name,
                    f"folder {name} ({p}) resolves to {real}, outside the root {root}: refused; "
                    "make it a real folder inside the root",
                )
            )
    return out
