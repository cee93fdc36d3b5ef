"""Near-duplicate groups from perceptual hashes and embeddings.

Two images are near-duplicates when their pHash Hamming distance is at most
`phash_max_distance` AND their embedding cosine is at least `embedding_min_cosine`. The hash
alone confuses a re-rolled seed with a retouch, and the embedding alone confuses two poses of
the same prompt, so both must agree. When either image has no embedding (CLIP unavailable),
the hash alone decides with the stricter `phash_only_max_distance`. Groups are the connected
components of that relation (near-duplicate of a near-duplicate joins the group).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.config import DedupSettings
from core.unionfind import UnionFind


@dataclass(frozen=True)
class DedupItem:
    sha256: str
    phash: str  # 16 hex chars
    embedding: np.ndarray | None  # L2-normalised float32, or None when unavailable


def phash_int(hex_hash: str) -> int:
    if len(hex_hash) != 16:
        raise ValueError(f"pHash must be 16 hex characters, got {hex_hash!r}")
    return int(hex_hash, 16)


def hamming(a: str, b: str) -> int:
    return (phash_int(a) ^ phash_int(b)).bit_count()


def _popcount64(x: np.ndarray) -> np.ndarray:
    """Bits set in each uint64 (SWAR; numpy 1.26 has no bitwise_count)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    out: np.ndarray = ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)
    return out


def is_near_duplicate(a: DedupItem, b: DedupItem, settings: DedupSettings) -> bool:
    dist = hamming(a.phash, b.phash)
    if a.embedding is None or b.embedding is None or a.embedding.shape != b.embedding.shape:
        return dist <= settings.phash_only_max_distance
    cos = float(np.dot(a.embedding.astype(np.float64), b.embedding.astype(np.float64)))
    return dist <= settings.phash_max_distance and cos >= settings.embedding_min_cosine


# Cells of one comparison block (rows x items): a drop of tens of thousands of new images is
# compared in blocks of about 32 MB per matrix, not in one rows x n matrix that outgrows memory.
MAX_CELLS = 1 << 22


@dataclass(frozen=True)
class _Prepared:
    """The items as arrays, built once for every block of rows compared against them."""

    hashes: np.ndarray  # uint64 per item
    has_emb: np.ndarray  # bool per item: an embedding of the common length
    emb: np.ndarray | None  # n x d float64 (zero rows where has_emb is False), None when no item has one


def _prepare(items: Sequence[DedupItem]) -> _Prepared:
    hashes = np.array([phash_int(it.phash) for it in items], dtype=np.uint64)
    # Embeddings of another length (a different CLIP model) cannot be compared: those images
    # fall back to the pHash-only rule, as is_near_duplicate does.
    dims = Counter(it.embedding.shape for it in items if it.embedding is not None)
    shape = dims.most_common(1)[0][0] if dims else None
    has_emb = np.array([it.embedding is not None and it.embedding.shape == shape for it in items])
    emb = None
    if shape is not None:
        emb = np.zeros((len(items), *shape), dtype=np.float64)
        for i, it in enumerate(items):
            if has_emb[i] and it.embedding is not None:
                emb[i] = it.embedding
    return _Prepared(hashes, has_emb, emb)


def _pairs(p: _Prepared, idx: np.ndarray, settings: DedupSettings) -> np.ndarray:
    """Boolean len(idx) x n block of the near-duplicate relation (vectorised): the items at `idx`
    against every item."""
    dist = _popcount64(p.hashes[idx, None] ^ p.hashes[None, :])
    both = p.has_emb[idx, None] & p.has_emb[None, :]
    rel: np.ndarray = ~both & (dist <= settings.phash_only_max_distance)
    if p.emb is not None:
        cos = p.emb[idx] @ p.emb.T
        rel |= both & (dist <= settings.phash_max_distance) & (cos >= settings.embedding_min_cosine)
    rel[np.arange(len(idx)), idx] = False  # an image is not its own near-duplicate
    return rel


def near_duplicate_pairs(
    items: Sequence[DedupItem], of: Sequence[int], settings: DedupSettings, max_cells: int = MAX_CELLS
) -> list[list[str]]:
    """The near-duplicate pairs [a, b] that involve the items at positions `of`, each sorted: what
    new arrivals add to groups already known among the others (len(of) x n comparisons, not n x n,
    in blocks of at most `max_cells`)."""
    if not of or len(items) < 2:
        return []
    prepared = _prepare(items)
    rows = np.asarray(of, dtype=np.int64)
    step = max(1, max_cells // len(items))
    out: set[tuple[str, ...]] = set()
    for lo in range(0, len(rows), step):
        block = rows[lo : lo + step]
        rel = _pairs(prepared, block, settings)
        out.update(
            tuple(sorted((items[int(block[r])].sha256, items[int(j)].sha256)))
            for r, j in zip(*np.nonzero(rel), strict=True)
        )
    return [list(p) for p in sorted(out)]


def near_duplicate_groups(
    items: Sequence[DedupItem | tuple[str, str, np.ndarray | None]], settings: DedupSettings
) -> list[list[str]]:
    """Groups (size >= 2) of near-duplicate shas, each sorted, largest group first."""
    its = [it if isinstance(it, DedupItem) else DedupItem(*it) for it in items]
    if len(its) < 2:
        return []
    rel = _pairs(_prepare(its), np.arange(len(its)), settings)  # a set or a window: n x n is small
    uf = UnionFind(range(len(its)))
    for i, j in zip(*np.nonzero(np.triu(rel)), strict=True):
        uf.join(int(i), int(j))
    comps: dict[int, list[str]] = {}
    for i, it in enumerate(its):
        comps.setdefault(uf.find(i), []).append(it.sha256)
    groups = [sorted(g) for g in comps.values() if len(g) > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def rule_description(settings: DedupSettings, embeddings_available: bool) -> str:
    if embeddings_available:
        return (
            f"near-duplicates: pHash Hamming <= {settings.phash_max_distance} and embedding cosine >= "
            f"{settings.embedding_min_cosine:g} (pHash alone <= {settings.phash_only_max_distance} "
            "for images without an embedding)"
        )
    return (
        f"near-duplicates: pHash Hamming <= {settings.phash_only_max_distance} (pHash only: embeddings are "
        f"unavailable; with them the rule is Hamming <= {settings.phash_max_distance} and cosine >= "
        f"{settings.embedding_min_cosine:g})"
    )
