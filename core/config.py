"""The one validated configuration model, loaded once at start-up.

Sources, later ones winning: built-in defaults, a YAML file, then environment variables
`BESTSHOT_<SECTION>__<KEY>=value` (value parsed as YAML, e.g. `BESTSHOT_WATCH__STABLE_SECONDS=2`).
Unknown keys are rejected; errors name the dotted field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.anomaly.settings import AnomalySettings
from core.anomaly.tags import TAGS
from core.canonical import canonical_path
from core.crop.settings import CropSettings
from core.errors import ConfigError
from core.extractors.settings import ExtractorSettings
from core.labels.settings import LabelSettings
from core.rank.settings import RankSettings

ENV_PREFIX = "BESTSHOT_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathSettings(_Section):
    """Folders relative to the root (absolute paths are allowed but must be on the root's volume)."""

    inbox: str = "inbox"
    raw: str = "raw"
    approved: str = "exports/approved"
    to_crop: str = "exports/to_crop"
    cropped: str = "exports/cropped"
    rejected: str = "exports/rejected"
    review_queue: str = "exports/review_queue"
    sidecar: str = "sidecar"
    labels: str = "labels"
    models: str = "models"
    logs: str = "logs"
    # SQLAlchemy URL; None means sqlite:///<root>/bestshot.sqlite.
    db_url: str | None = None


class WatchSettings(_Section):
    # A file is ready once its size and mtime have not changed for this long and it decodes.
    stable_seconds: float = Field(1.0, gt=0, le=60)
    # An incomplete file (no PNG IEND, truncated) is retried until this age, then reported.
    incomplete_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    reconcile_minutes: float = Field(10.0, gt=0)


ImageFormat = Literal["PNG", "JPEG", "WEBP"]
_ALL_FORMATS: tuple[ImageFormat, ...] = ("PNG", "JPEG", "WEBP")


class IngestSettings(_Section):
    accept_formats: list[ImageFormat] = Field(default_factory=lambda: list(_ALL_FORMATS))
    max_pixels: int = Field(80_000_000, ge=1)
    max_file_bytes: int = Field(512 * 1024 * 1024, ge=1)
    caption_suffixes: list[str] = Field(default_factory=lambda: [".txt", ".caption"])
    yaml_suffixes: list[str] = Field(default_factory=lambda: [".yaml", ".yml"])
    # `scan` reads, hashes and decodes the next inbox files on this many threads while it registers
    # the current one (0: one file at a time). Each holds one decoded image until its turn.
    read_ahead_threads: int = Field(2, ge=0, le=32)


class GroupingSettings(_Section):
    max_set_size: int = Field(4, ge=1, le=64)
    # A loose-file set closes after this long without a new compatible file.
    quiet_seconds: float = Field(20.0, gt=0)
    # Loose files further apart in time (mtime) never share a set.
    time_window_seconds: float = Field(900.0, gt=0)
    # Without shared metadata, images join a set when their pHash distance is at most this.
    phash_max_distance: int = Field(14, ge=0, le=64)
    # With embeddings available, cosine similarity at least this also joins.
    embedding_min_cosine: float = Field(0.85, ge=-1, le=1)


class DedupSettings(_Section):
    phash_max_distance: int = Field(8, ge=0, le=64)
    embedding_min_cosine: float = Field(0.95, ge=-1, le=1)
    # Used alone when embeddings are unavailable, so it is stricter.
    phash_only_max_distance: int = Field(4, ge=0, le=64)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    file_max_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    file_backups: int = Field(3, ge=0)


class ReviewSettings(_Section):
    """The review page (`bestshot review`; daemon/review/). It only ever binds to 127.0.0.1."""

    # The running daemon serves the page too (its URL, with the run's token, goes to the log and
    # to <root>/logs/review.url).
    enabled: bool = False
    # 0: any free port.
    port: int = Field(8765, ge=0, le=65535)
    # Previews: longest side and JPEG quality (cached by sha256 under sidecar/previews/).
    preview_max_side: int = Field(1600, ge=256, le=8192)
    preview_quality: int = Field(85, ge=50, le=95)
    # The tag toggles offered when rejecting and when marking a missed anomaly.
    tags: list[str] = Field(default_factory=lambda: list(TAGS), min_length=1)


class Config(_Section):
    root: Path = Path("data")
    mode: Literal["auto", "watch", "recommend", "batch"] = "auto"
    paths: PathSettings = Field(default_factory=PathSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    grouping: GroupingSettings = Field(default_factory=GroupingSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    extractors: ExtractorSettings = Field(default_factory=ExtractorSettings)
    anomaly: AnomalySettings = Field(default_factory=AnomalySettings)
    crop: CropSettings = Field(default_factory=CropSettings)
    rank: RankSettings = Field(default_factory=RankSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    def path(self, name: str) -> Path:
        """Absolute path of a configured folder (`inbox`, `approved`, ...)."""
        p = Path(getattr(self.paths, name))
        return p if p.is_absolute() else self.root / p

    @property
    def db_url(self) -> str:
        return self.paths.db_url or f"sqlite:///{self.root / 'bestshot.sqlite'}"


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in ("BESTSHOT_CONFIG", "BESTSHOT_ROOT"):
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(None, f"environment variable {key}: not a valid value ({e})") from e
    return tree


def _format_validation(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{field}: {err['msg']}")
    return f"invalid configuration ({source}):\n  " + "\n  ".join(lines)


def load_config(
    config_file: Path | None = None,
    *,
    root: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config. `root` (e.g. from --root) wins over file and environment."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "defaults"
    file = config_file or (Path(env["BESTSHOT_CONFIG"]) if env.get("BESTSHOT_CONFIG") else None)
    if file is not None:
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise ConfigError(file, f"cannot read config file: {e.strerror or e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(file, f"config file is not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(file, "config file must be a mapping of sections")
        data = loaded
        source = str(file)
    data = _deep_merge(data, _env_overrides(env))
    if env.get("BESTSHOT_ROOT"):
        data["root"] = env["BESTSHOT_ROOT"]
    if root is not None:
        data["root"] = str(root)
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(file, _format_validation(e, source)) from e
    # Resolved once, here: every path the daemon compares with an event's path derives from these.
    paths = {
        k: str(canonical_path(Path(v)))
        for k, v in cfg.paths.model_dump().items()
        if k != "db_url" and v is not None and Path(v).expanduser().is_absolute()
    }
    return cfg.model_copy(update={"root": canonical_path(cfg.root), "paths": cfg.paths.model_copy(update=paths)})
