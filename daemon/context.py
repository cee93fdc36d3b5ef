"""What every stage needs: config, store, file operations and the extractors, built once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.layout import from_db_path, to_db_path
from daemon.files.fileops import FileOps
from daemon.files.health import Health
from daemon.store import Store

if TYPE_CHECKING:  # annotations only: importing them costs `bestshot status` numpy and OpenCV
    from core.config import Config
    from core.extractors.base import Extractor
    from core.imaging import DecodedImage
    from core.rank.model import RankModel


@dataclass(frozen=True)
class PriorFit:
    """The prior ranking model and the number of present images it was standardised on."""

    images: int
    model: RankModel


@dataclass
class Ctx:
    cfg: Config
    store: Store
    fileops: FileOps
    extractors: list[Extractor] = field(default_factory=list)
    # Rebuilt on demand by daemon.rank.ranking.current_model (which keeps the fit in the database too).
    prior_fit: PriorFit | None = None
    # Whether writes work (a full disk); set by build_ctx.
    health: Health | None = None
    # The versions of what was learned (daemon.store.learned_state.LEARNED_KEYS) that the live extractors use.
    learned: tuple[str | None, ...] = ()
    # Pixels ingest decoded, for the first extraction pass over the image (decode once); at most
    # one pass's worth (extractors.images_per_pass), oldest first.
    decoded: dict[str, DecodedImage] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.cfg.root

    def rel(self, p: Path) -> str:
        """The path as the database stores it: relative to the root, always valid UTF-8."""
        try:
            return to_db_path(str(p.relative_to(self.cfg.root)))
        except ValueError:
            return to_db_path(str(p))

    def abs(self, rel: str) -> Path:
        p = Path(from_db_path(rel))
        return p if p.is_absolute() else self.cfg.root / p

    def extractor(self, name: str) -> Extractor | None:
        return next((e for e in self.extractors if e.name == name), None)

    def hand_off(self, img: DecodedImage) -> None:
        if not self.extractors:
            return
        self.decoded[img.sha256] = img
        while len(self.decoded) > self.cfg.extractors.images_per_pass:
            del self.decoded[next(iter(self.decoded))]  # evicted: decoded again by its pass

    def handoff_full(self) -> bool:
        return len(self.decoded) >= self.cfg.extractors.images_per_pass


def reading_ctx(cfg: Config) -> Ctx:
    """A context for commands that only read the library (`queue`): no extractors, no folders
    created, and none of the extractor modules imported (daemon.app.build_ctx imports them all)."""
    from daemon.store.db import open_store

    store = open_store(cfg.db_url)
    return Ctx(cfg=cfg, store=store, fileops=FileOps(store, cfg.root))
