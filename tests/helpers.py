"""Shared test utilities: real PNG files, a config with short timings, a real daemon subprocess."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import numpy as np
import yaml
from PIL import Image, PngImagePlugin

from core.imaging import DecodedImage, decode

if TYPE_CHECKING:
    from daemon.context import Ctx
    from daemon.labels.decide import DecisionTracker
    from daemon.pipeline import Pipeline
    from daemon.watch.engine import Engine

REPO = Path(__file__).resolve().parent.parent

FAST = {
    "watch": {"stable_seconds": 0.3, "incomplete_timeout_seconds": 4.0, "reconcile_minutes": 60},
    "grouping": {"quiet_seconds": 1.5},
    "extractors": {"enabled": ["phash"]},
}


def textured(seed: int, w: int = 96, h: int = 128, base: np.ndarray | None = None, noise: float = 6.0) -> np.ndarray:
    """A smooth random image (distinct per seed); `base` plus noise gives a near-duplicate."""
    rng = np.random.default_rng(seed)
    if base is not None:
        return np.clip(base.astype(np.float64) + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)
    small = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def write_png(path: Path, arr: np.ndarray, text: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    Image.fromarray(arr).save(path, format="PNG", pnginfo=info)
    return path


def write_config(root: Path, extra: dict[str, Any] | None = None) -> Path:
    cfg = json.loads(json.dumps(FAST))
    for k, v in (extra or {}).items():
        if isinstance(v, dict):
            cfg.setdefault(k, {}).update(v)
        else:
            cfg[k] = v
    root.mkdir(parents=True, exist_ok=True)
    p = root / "bestshot.yaml"
    p.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return p


def bestshot(*args: str, root: Path, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"bestshot {args} exit {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def status(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(bestshot("status", "--json", root=root).stdout)
    return out


class DaemonProc:
    """`bestshot run` as a real subprocess over a temp root."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.root = root
        self.log = root.parent / f"{root.name}.daemon.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0  # byte offset where this run's output starts in the (shared, appended) log

    def start(self) -> DaemonProc:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # The log is appended to across restarts: only this start's output says it is running.
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.started_at = offset
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "--root", str(self.root), *self.extra],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
        )
        try:
            wait_for(
                lambda: b"daemon running" in self.log.read_bytes()[offset:] or self.proc.poll() is not None,
                timeout=60,
                what="daemon start",
            )
        except AssertionError:
            raise AssertionError("daemon did not start:\n" + self.output()[-3000:]) from None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n" + self.output()[-3000:])
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def idle_after(self, text: str = "") -> bool:
        """This run's worker said it is idle after its last line containing `text` (the daemon must
        run with -v: the idle line is a debug line)."""
        out = self.log.read_bytes()[self.started_at :].decode(errors="replace") if self.log.exists() else ""
        at = out.rfind(text) if text else 0
        return at >= 0 and "worker idle" in out[at + len(text) :]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("daemon did not stop in time\n" + self.output()[-3000:]) from None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> DaemonProc:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # show what the daemon said next to the failing assertion
            print("---- daemon log ----\n" + self.output()[-6000:])
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def ingest(ctx: Ctx, pipeline: Pipeline | None = None) -> Pipeline:
    """Everything in the inbox registered, extracted and filed by the daemon's own pipeline (a new
    one, or the one a test goes on with), run to completion short of the steps tests drive
    themselves (near-duplicates, export, ranking)."""
    from daemon.pipeline import Pipeline

    if pipeline is None:
        pipeline = Pipeline(ctx, without=("duplicates", "parquet export", "ranking"))
    pipeline.run_to_completion(recover=False)
    return pipeline


def restart(ctx: Ctx) -> DecisionTracker:
    """What a restarted daemon does before its first event: crash recovery, the start-up rescan,
    and the decisions the rescan's moves make."""
    from daemon.pipeline import Pipeline

    pipeline = Pipeline(ctx)  # wired as the daemon's
    pipeline.recover()
    pipeline.engine.reconcile(direct=True)  # the start-up rescan
    pipeline.tracker.evaluate()
    return pipeline.tracker


def set_ids(ctx: Ctx) -> list[str]:
    from sqlalchemy import select

    from daemon.store.schema import sets

    with ctx.store.read() as conn:
        return [r.id for r in conn.execute(select(sets.c.id).order_by(sets.c.id))]


def move_member(ctx: Ctx, engine: Engine, tracker: DecisionTracker, rel: str, area: str) -> None:
    """The user moves a member to `area` (e.g. "approved", "rejected/extra_fingers"); the engine
    sees the move as the watcher reports it and the tracker decides what it can."""
    from core.events import FileMoved

    src = ctx.abs(rel)
    head, _, sub = area.partition("/")
    dst = ctx.cfg.path(head) / sub / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dst)
    engine.handle(FileMoved(src, dst))
    tracker.evaluate()


def state_value(ctx: Ctx, key: str) -> object:
    from daemon.store import records

    with ctx.store.read() as conn:
        return records.get_state(conn, key)


def wait_for(cond: Callable[[], Any], timeout: float = 30, what: str = "condition", interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def db_rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    import sqlite3

    con = sqlite3.connect(f"file:{root / 'bestshot.sqlite'}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def filed_sets(root: Path) -> dict[str, list[str]]:
    """set folder name -> sorted image file names, as on disk under raw/."""
    raw = root / "raw"
    if not raw.is_dir():
        return {}
    return {
        d.name: sorted(p.name for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
        for d in sorted(raw.iterdir())
        if d.is_dir()
    }


def random_clip_checkpoint(folder: Path) -> Path:
    """The random-weights test CLIP model (seeded as ClipExtractor's) as a checkpoint file, so a
    real, available ClipExtractor comes from settings alone (`extractors.clip.checkpoint`). The
    real weights cannot be downloaded here; fp16 halves the write."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)  # ClipExtractor's seed for its random-weights test model
        model = open_clip.create_model("ViT-B-32", pretrained=None)
    ckpt = folder / "vit-b-32.safetensors"
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(ckpt))
    return ckpt


def decoded(arr: np.ndarray, name: str = "x.png") -> DecodedImage:
    """An RGB array as the DecodedImage a PNG file of it would give (no file written)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return decode(Path(name), buf.getvalue())


SESSION_SCHEMA = json.loads((REPO / "core" / "schemas" / "session_line.schema.json").read_text())


def session_lines(root: Path) -> list[dict[str, Any]]:
    """Every line of the root's session logs, each checked against the published schema."""
    out = []
    for f in sorted((root / "labels" / "sessions").glob("*__session.jsonl")):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            jsonschema.validate(d, SESSION_SCHEMA)
            out.append(d)
    return out


def image_tree(root: Path, areas: tuple[str, ...] = ("raw", "exports")) -> dict[str, str]:
    """Relative path -> sha256 of every PNG under the root's `areas` (links left out): what the
    user's folders hold, to compare before and after a move, a batch or an undo."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for area in areas
        for p in sorted((root / area).rglob("*.png"))
        if p.is_file() and not p.is_symlink()
    }
