"""The review page under test: a scanned root of synthetic sets, `bestshot review` as a real
process, and plain HTTP (urllib) against it."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import REPO, bestshot, textured, wait_for, write_config, write_png


def make_root(
    root: Path, sets: int = 3, size: tuple[int, int] = (256, 384), extra: dict[str, Any] | None = None
) -> Path:
    """`sets` dropped folders of 3 synthetic PNGs each, filed and proposed by `bestshot scan`."""
    write_config(root, {"mode": "recommend", **(extra or {})})
    for s in range(sets):
        for i in range(3):
            write_png(root / "inbox" / f"batch{s}" / f"b{s}_{i}.png", textured(300 + 10 * s + i, w=size[0], h=size[1]))
    bestshot("scan", root=root, timeout=300)
    return root


def add_report(root: Path, sha: str, regions: list[dict[str, Any]], crop: dict[str, Any] | None = None) -> None:
    """Stored sidecars as the anomaly and crop extractors write them, for a synthetic image no
    detector finds anything in: the regions and crop the page must draw and learn from."""
    w, h = _size(root, sha)
    report = {
        "version": 2,
        "image_size": [w, h],
        "anomalies": regions,
        "uncertain_regions": [],
        "uncertain": False,
        "reasons": [],
        "scorer": "geometric",
        "suppressed": [],
    }
    con = sqlite3.connect(root / "bestshot.sqlite")
    try:
        con.execute(
            "insert into sidecars (sha256, extractor, version, payload, created_at) values (?, 'anomalies', 99, ?, ?)",
            (sha, json.dumps(report), time.time()),
        )
        if crop is not None:
            con.execute(
                "insert into sidecars (sha256, extractor, version, payload, created_at) values (?, 'crop', 99, ?, ?)",
                (sha, json.dumps(crop), time.time()),
            )
        con.commit()
    finally:
        con.close()


def _size(root: Path, sha: str) -> tuple[int, int]:
    con = sqlite3.connect(root / "bestshot.sqlite")
    try:
        w, h = con.execute("select width, height from images where sha256 = ?", (sha,)).fetchone()
        return int(w), int(h)
    finally:
        con.close()


def members(root: Path, set_id: str) -> list[tuple[str, str, str]]:
    """(sha256, path, original name) in set order."""
    con = sqlite3.connect(root / "bestshot.sqlite")
    try:
        return [
            (r[0], r[1], Path(r[2]).name)
            for r in con.execute(
                "select i.sha256, i.path, i.original_name from images i join set_members m on m.sha256 = i.sha256"
                " where m.set_id = ? order by m.position",
                (set_id,),
            )
        ]
    finally:
        con.close()


def sha_of(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


class ReviewProc:
    """`bestshot review --port 0` over `root`; its URL (with the run's token) from logs/review.url."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root.parent / f"{root.name}.review.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> ReviewProc:
        url_file = self.root / "logs" / "review.url"
        url_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "review", "--root", str(self.root), "--port", "0"],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        wait_for(lambda: url_file.exists() or self.proc.poll() is not None, timeout=90, what="review server")  # type: ignore[union-attr]
        if self.proc.poll() is not None:
            raise AssertionError("review exited:\n" + self.log.read_text(errors="replace"))
        self.url = url_file.read_text().strip()
        return self

    @property
    def token(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[1]

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self) -> ReviewProc:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            print("---- review log ----\n" + self.log.read_text(errors="replace")[-6000:])
        self.stop()


def http(
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, Any]:
    """(status, decoded JSON or raw bytes)."""
    data = None
    h = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if token is not None:
        h["X-Bestshot-Token"] = token
    req = urllib.request.Request(url, data=data, headers=h, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            raw, status, ctype = r.read(), r.status, r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        raw, status, ctype = e.read(), e.code, e.headers.get("content-type", "")
    return status, json.loads(raw) if "json" in ctype else raw
