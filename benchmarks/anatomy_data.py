"""The human-annotated anatomy dev set (`../shared/data/anatomy_dev/`) as labels, sets and sidecars.

Reusable by every benchmark and fitting script; the API is small on purpose:

- `data_parser(description)`: `--data` and `--work`, as every script over a labelled folder takes them.
- `load_dataset(data_dir) -> Dataset`: every image (file, generator, prompt, number) with its
  labels averaged over annotators, plus `Dataset.issues`, the irregular cells that were parsed
  leniently or skipped (print them; nothing is dropped silently).
- `Label` per image: for each part in `PARTS` (torso, limbs, feet, hands, face)
  `has_error[part]` (mean over annotators of "this annotator marked an error" >= 0.5, i.e. any of
  two annotators), `error_share[part]` (that mean itself), `severity[part]` (sum over the five
  error types of k * x, x = a 0.2 / b 0.5 / c 1.0, averaged over annotators) and `visible[part]`
  (the largest N of the `k/N` entries, i.e. instances people could see; None when nobody
  labelled an error on that part, because the labels only state N next to an error).
- `groups_of(dataset)`: every generator x prompt group's images, sorted by number.
- `sets_of(dataset, size)`: the fixed set rule. Per generator x prompt the images are sorted by
  number and cut in order: for 8 images, size 4 gives [1-4], [5-8]; size 2 gives [1-2], [3-4],
  [5-6], [7-8]. Images that do not fill a last set are in no set (they still count per image).
- `scan_folders({folder: [(key, path)]}, root)`: the same for any images (e.g. the crop set).
- `scan(dataset, work_dir) -> Scanned`: builds (or reuses) a bestshot root at
  `<work_dir>/root`, copies each image into `inbox/<set folder>/` (one folder per set of 4, so
  the daemon files exactly those sets), runs the real `bestshot scan` (the daemon's own pipeline,
  sidecars cached in the root's SQLite: a rerun with unchanged extractors takes seconds) and reads
  back, per image id: the sha256, the stored payload of every extractor (`payloads[extractor]`,
  newest version), and the ranking signals exactly as the daemon builds them
  (`daemon.rank.ranking.signals_for`).

Images are copied outside the repository only (the work dir); the data's licence allows
evaluation and development use, never copying it into the project.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from core.rank.features import ImageSignals  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "anatomy_dev"
DEFAULT_WORK = Path("/tmp/bestshot-judgement")  # where the scan's root and sidecar cache live
PARTS = ("torso", "limbs", "feet", "hands", "face")
ERROR_TYPES = ("missing", "extra", "configuration", "orientation", "proportion")
SEVERITY = {"a": 0.2, "b": 0.5, "c": 1.0}
# A k/N entry whose severity letter is missing counts as an error of middle severity (b).
DEFAULT_SEVERITY = "b"
# File names that do not follow <prefix>_<prompt word>_<NN>: path under images/ -> number.
IRREGULAR_NUMBERS = {"sdXL/physician_examining_patient/sdXL_physician_018.jpg": 8}
# Extractors run for the benchmark: the default list minus those needing OpenCLIP weights.
EXTRACTORS = ("phash", "hands", "pose", "face", "saliency", "quality", "anomalies", "crop")

_ENTRY = re.compile(r"^(\d+)\s*([abc])?\s*/\s*(\d+)\s*([abc])?$")
_COLUMN = re.compile(r"^(\d)\.\s*(\w+)\s+Error-\d\.\d\s+(\w+)$")


@dataclass(frozen=True)
class Label:
    has_error: dict[str, bool]
    error_share: dict[str, float]
    severity: dict[str, float]
    visible: dict[str, int | None]
    annotators: int

    def total_severity(self, parts: Sequence[str] = ("hands", "limbs", "feet")) -> float:
        return float(sum(self.severity[p] for p in parts))


@dataclass(frozen=True)
class Item:
    image_id: str  # as in annotations.csv: <generator>_<prompt>_<NN>
    path: Path
    generator: str  # dall-e3 | sdxl | stablecascade
    prompt: str  # with spaces, as in the labels
    number: int
    label: Label


@dataclass
class Dataset:
    root: Path
    items: dict[str, Item]  # by image id, in (generator, prompt, number) order
    issues: list[str] = field(default_factory=list)

    @property
    def prompts(self) -> list[str]:
        return sorted({it.prompt for it in self.items.values()})

    @property
    def generators(self) -> list[str]:
        return sorted({it.generator for it in self.items.values()})


def _generator(dir_name: str) -> str:
    return dir_name.lower().replace("_", "").replace(" ", "")


def _parse_cell(cell: str, where: str, issues: list[str]) -> tuple[float, int | None, bool]:
    """(severity sum, largest N, any error) of one cell; lenient about spaces and stray letters."""
    severity = 0.0
    visible: int | None = None
    any_error = False
    for raw in cell.split(","):
        entry = raw.strip().replace(" ", "")
        if not entry:
            continue
        m = _ENTRY.match(entry)
        if m is None:
            issues.append(f"{where}: skipped unreadable entry {raw.strip()!r}")
            continue
        k, letter_k, n, letter_n = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
        letter = letter_n or letter_k
        if letter_k and letter_n and letter_k != letter_n:
            issues.append(f"{where}: {entry!r} has two severities, used {letter_n!r}")
        elif letter_k and not letter_n:
            issues.append(f"{where}: {entry!r} has its severity before the slash, read as {letter_k!r}")
        elif letter_k:
            issues.append(f"{where}: {entry!r} repeats its severity, read as {letter_n!r}")
        if letter is None:
            issues.append(f"{where}: {entry!r} has no severity letter, counted as {DEFAULT_SEVERITY!r}")
            letter = DEFAULT_SEVERITY
        if k > n:
            issues.append(f"{where}: {entry!r} has more errors than instances, N raised to {k}")
            n = k
        severity += k * SEVERITY[letter]
        visible = n if visible is None else max(visible, n)
        any_error = any_error or k > 0
    return severity, visible, any_error


def _read_labels(csv_path: Path, issues: list[str]) -> dict[str, Label]:
    rows_by_id: dict[str, list[dict[str, str]]] = defaultdict(list)
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if "Image Id" not in (reader.fieldnames or []):
            raise LabelledDataError(csv_path, "no 'Image Id' column (the first row names the columns)")
        columns: list[tuple[str, str]] = []  # (column, part)
        for col in reader.fieldnames or []:
            m = _COLUMN.match(col.strip())
            if m and m.group(3).lower() in PARTS:
                columns.append((col, m.group(3).lower()))
        for row in reader:
            rows_by_id[row["Image Id"].strip()].append({c: row.get(c) or "" for c, _ in columns})
    out: dict[str, Label] = {}
    for image_id, rows in rows_by_id.items():
        sev = {p: 0.0 for p in PARTS}
        err = {p: 0.0 for p in PARTS}
        vis: dict[str, int | None] = {p: None for p in PARTS}
        for row in rows:
            marked = {p: False for p in PARTS}
            for col, part in columns:
                s, n, e = _parse_cell(row[col], f"{image_id} [{col}]", issues)
                sev[part] += s / len(rows)
                marked[part] = marked[part] or e
                if n is not None:
                    vis[part] = n if vis[part] is None else max(vis[part] or 0, n)
            for p in PARTS:
                err[p] += float(marked[p]) / len(rows)
        out[image_id] = Label({p: err[p] >= 0.5 for p in PARTS}, err, sev, vis, len(rows))
    return out


class LabelledDataError(Exception):
    """A labelled folder the scripts cannot use, or a scan of it that failed: the path and why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def run_script(main: Callable[[], int]) -> int:
    """A script's entry point: a folder it cannot use is one line on stderr and exit status 2."""
    try:
        return main()
    except LabelledDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def data_parser(description: str) -> argparse.ArgumentParser:
    """The options every script over a labelled folder takes: `--data` (the folder) and `--work`
    (where `scan` keeps its root, so the sidecars are cached between the scripts)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    return ap


def load_dataset(data_dir: Path = DEFAULT_DATA, *, min_prompts: int = 1) -> Dataset:
    """Every image under `images/<generator>/<prompt>/` joined to its averaged labels. Raises
    LabelledDataError for a folder without that layout, without a labelled image, or with fewer
    than `min_prompts` prompts (leave-one-prompt-out needs 2)."""
    layout = "see ../shared/data/README.md (anatomy_dev) for the layout"
    if not data_dir.is_dir():
        raise LabelledDataError(data_dir, "no such folder")
    for need in ("annotations.csv", "images"):
        if not (data_dir / need).exists():
            raise LabelledDataError(data_dir, f"no {need} in it; {layout}")
    issues: list[str] = []
    labels = _read_labels(data_dir / "annotations.csv", issues)
    items: list[Item] = []
    for path in sorted((data_dir / "images").glob("*/*/*")):
        if not path.is_file():
            continue
        rel = path.relative_to(data_dir / "images").as_posix()
        gen, prompt = _generator(path.parent.parent.name), path.parent.name.replace("_", " ")
        if rel in IRREGULAR_NUMBERS:
            number = IRREGULAR_NUMBERS[rel]
            issues.append(f"{rel}: irregular file name, read as number {number}")
        else:
            m = re.search(r"(\d+)$", path.stem)
            if m is None:
                issues.append(f"{rel}: no number in the file name, skipped")
                continue
            number = int(m.group(1))
        image_id = f"{gen}_{prompt}_{number:02d}"
        if image_id not in labels:
            issues.append(f"{rel}: no label row {image_id!r}, skipped")
            continue
        items.append(Item(image_id, path, gen, prompt, number, labels[image_id]))
    seen = {it.image_id for it in items}
    issues.extend(f"label row {i!r} has no image file" for i in sorted(set(labels) - seen))
    items.sort(key=lambda it: (it.generator, it.prompt, it.number))
    ds = Dataset(data_dir, {it.image_id: it for it in items}, issues)
    if not items:
        raise LabelledDataError(data_dir, f"no image under images/<generator>/<prompt>/ has a label row; {layout}")
    if len(ds.prompts) < min_prompts:
        raise LabelledDataError(
            data_dir, f"{len(ds.prompts)} prompt(s); leave-one-prompt-out needs images of at least {min_prompts}"
        )
    return ds


def groups_of(dataset: Dataset) -> list[tuple[str, ...]]:
    """Image ids per generator x prompt, sorted by number, whatever the group's size."""
    groups: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in dataset.items.values():
        groups[(it.generator, it.prompt)].append(it)
    return [tuple(it.image_id for it in sorted(groups[key], key=lambda it: it.number)) for key in sorted(groups)]


def sets_of(dataset: Dataset, size: int, *, rest: bool = False) -> list[tuple[str, ...]]:
    """Image ids per set: per generator x prompt, sorted by number, cut into runs of `size`. A
    group's last images that do not fill a run are left out, or form a shorter run with `rest`."""
    out: list[tuple[str, ...]] = []
    for g in groups_of(dataset):
        stop = len(g) if rest else len(g) - size + 1
        out.extend(g[i : i + size] for i in range(0, max(stop, 0), size))
    return out


def set_folder(members: Sequence[Item]) -> str:
    first, last = members[0], members[-1]
    return f"{first.generator}__{first.prompt.replace(' ', '_')}__{first.number:02d}-{last.number:02d}"


# ---- the real pipeline over a work root -------------------------------------------------------
@dataclass
class Scanned:
    root: Path
    sha: dict[str, str]  # image id -> sha256
    payloads: dict[str, dict[str, dict[str, Any]]]  # image id -> extractor -> newest payload
    signals: dict[str, ImageSignals]  # image id -> what the ranker sees (daemon.rank.ranking.signals_for)
    scan_seconds: float
    scan_output: str


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _known_shas(db: Path) -> set[str]:
    if not db.exists():
        return set()
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("SELECT sha256 FROM images")}
    except sqlite3.OperationalError:
        return set()
    finally:
        con.close()


def build_root(folders: dict[str, list[tuple[str, Path]]], root: Path) -> dict[str, str]:
    """A root whose inbox gets one folder per set: {folder: [(key, source path)]}; images the
    root already knows (by sha256) are not copied again. Returns key -> sha256."""
    import yaml

    (root / "inbox").mkdir(parents=True, exist_ok=True)
    cfg = {"extractors": {"enabled": list(EXTRACTORS)}, "mode": "watch"}
    (root / "bestshot.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    known = _known_shas(root / "bestshot.sqlite")
    shas: dict[str, str] = {}
    for name, members in folders.items():
        folder = root / "inbox" / name
        for key, path in members:
            shas[key] = _sha256(path)
            if shas[key] in known:
                continue
            folder.mkdir(exist_ok=True)
            dest = folder / path.name
            if not dest.exists():
                shutil.copy2(path, dest)
    return shas


def scan_folders(folders: dict[str, list[tuple[str, Path]]], root: Path, timeout: float = 7200) -> Scanned:
    """`bestshot scan` over a root built by `build_root`, everything read back by key."""
    import time

    shas = build_root(folders, root)
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "scan", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise LabelledDataError(root, f"bestshot scan failed ({res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}")
    return Scanned(root, shas, *_read_back(root, shas), seconds, res.stdout.strip())


def set_folders(dataset: Dataset) -> dict[str, list[tuple[str, Path]]]:
    """One inbox folder per set of 4; every image is scanned, so a group's images past its last
    full set of 4 get a folder of their own."""
    folders = {}
    for members in sets_of(dataset, 4, rest=True):
        items = [dataset.items[i] for i in members]
        folders[set_folder(items)] = [(it.image_id, it.path) for it in items]
    return folders


def scan(dataset: Dataset, work_dir: Path, timeout: float = 7200) -> Scanned:
    """Run `bestshot scan` over `<work_dir>/root` (`set_folders`) and read back every image's
    sidecars and signals, keyed by image id."""
    return scan_folders(set_folders(dataset), work_dir / "root", timeout)


def _read_back(
    root: Path, shas: dict[str, str]
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, ImageSignals]]:
    from core.config import load_config
    from daemon.rank.ranking import signals_for
    from daemon.store.db import open_store

    by_sha = {s: i for i, s in shas.items()}
    payloads: dict[str, dict[str, dict[str, Any]]] = {i: {} for i in shas}
    con = sqlite3.connect(root / "bestshot.sqlite")
    try:
        for sha, ext, payload in con.execute("SELECT sha256, extractor, payload FROM sidecars ORDER BY version"):
            if sha in by_sha and payload is not None:
                payloads[by_sha[sha]][ext] = json.loads(payload)
    finally:
        con.close()
    cfg = load_config(root=root)
    store = open_store(cfg.db_url)
    try:
        with store.read() as conn:
            sig = signals_for(conn, list(shas.values()))
    finally:
        store.close()
    return payloads, {i: sig[s] for i, s in shas.items()}
