"""Extractors declare what the store keeps of their results, and each sidecar file is written once
per image per pass (face and pose share det/<sha>.facefoot.json)."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from core.config import load_config
from core.extractors.registry import EXTRACTOR_CLASSES
from daemon.app import build_ctx
from tests.helpers import ingest, textured, wait_for, write_png


class Renames(FileSystemEventHandler):
    """Counts completed atomic writes (a temp file renamed onto its name) per target file."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.lock = threading.Lock()

    def on_moved(self, event: FileSystemEvent) -> None:
        with self.lock:
            self.count[Path(str(event.dest_path)).name] += 1


def test_every_extractor_declares_its_outputs_with_a_file_or_a_key() -> None:
    for cls in EXTRACTOR_CLASSES.values():
        for out in cls.outputs:
            assert out.file or out.key, (cls.name, out)
            if out.kind in ("npy", "json", "bytes", "facefoot"):
                assert "{sha}" in out.file, (cls.name, out)


def test_each_sidecar_file_is_written_once_per_image(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_png(root / "inbox" / "s" / "a.png", textured(7, w=160, h=240))
    names = ["phash", "hands", "pose", "face", "saliency", "quality", "anomalies", "crop"]
    ctx = build_ctx(load_config(root=root, env={}, overrides={"extractors": {"enabled": names}}))
    side = ctx.cfg.path("sidecar")
    # Every output folder exists before the observer starts: inotify watches a folder made later
    # only once watchdog has added it, and a rename into it before then would go unseen.
    for cls in EXTRACTOR_CLASSES.values():
        for out in cls.outputs:
            if out.file:
                out.path_under(ctx.cfg.path(out.folder), "x").parent.mkdir(parents=True, exist_ok=True)
    renames = Renames()
    observer = Observer()
    observer.schedule(renames, str(root), recursive=True)
    observer.start()
    try:
        ingest(ctx)
        files = [p for p in (*side.rglob("*.json"), *side.rglob("*.npy"), *(root / "labels" / "crops").glob("*"))]
        assert any(p.name.endswith(".facefoot.json") for p in files)
        wait_for(lambda: set(renames.count) >= {p.name for p in files}, timeout=20, what="every write's event")
    finally:
        observer.stop()
        observer.join(timeout=5)
        for e in ctx.extractors:
            e.close()
    assert {p.name: renames.count[p.name] for p in files} == {p.name: 1 for p in files}
