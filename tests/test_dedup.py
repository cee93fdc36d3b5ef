"""Near-duplicate rule and groups, on synthetic hashes/embeddings and on real re-encodings."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from core.config import DedupSettings
from core.dedup import DedupItem, hamming, is_near_duplicate, near_duplicate_groups, rule_description
from core.extractors.phash import phash_hex
from core.imaging import decode

S = DedupSettings()  # 8 / 0.95 / 4


def flip_bits(hex_hash: str, n: int) -> str:
    return f"{int(hex_hash, 16) ^ ((1 << n) - 1):016x}"


def unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = (v / np.linalg.norm(v)).astype(np.float32)
    return out


def test_hamming() -> None:
    assert hamming("0000000000000000", "ffffffffffffffff") == 64
    assert hamming("8000000000000001", "0000000000000000") == 2
    with pytest.raises(ValueError):
        hamming("abc", "0000000000000000")


def test_both_conditions_needed_with_embeddings() -> None:
    rng = np.random.default_rng(0)
    e = unit(rng.normal(size=512))
    close = unit(e + 0.05 * unit(rng.normal(size=512)))  # cosine ~0.999
    far = unit(rng.normal(size=512))
    h = "a5a5a5a5a5a5a5a5"
    a = DedupItem("a", h, e)
    assert is_near_duplicate(a, DedupItem("b", flip_bits(h, 8), close), S)
    assert not is_near_duplicate(a, DedupItem("c", flip_bits(h, 9), close), S)  # hash too far
    assert not is_near_duplicate(a, DedupItem("d", h, far), S)  # embedding too far
    # Without an embedding on either side, the stricter pHash-only bound applies.
    assert is_near_duplicate(a, DedupItem("e", flip_bits(h, 4), None), S)
    assert not is_near_duplicate(a, DedupItem("f", flip_bits(h, 5), None), S)


def test_groups_are_connected_components_and_match_the_pairwise_rule() -> None:
    rng = np.random.default_rng(1)
    base = unit(rng.normal(size=64))
    h = "0f0f0f0f0f0f0f0f"
    items = [
        DedupItem("a", h, base),
        DedupItem("b", flip_bits(h, 6), base),  # near a
        DedupItem("c", flip_bits(h, 12), base),  # 6 from b, 12 from a: joins through b
        DedupItem("d", "f0f0f0f0f0f0f0f0", unit(rng.normal(size=64))),  # alone
        DedupItem("e", "f0f0f0f0f0f0f0f1", None),  # 1 bit from d, no embedding: pHash-only pair
    ]
    groups = near_duplicate_groups(items, S)
    assert groups == [["a", "b", "c"], ["d", "e"]]
    # The vectorised relation agrees with the pairwise rule on random data.
    many = [
        DedupItem(
            str(i), f"{int(rng.integers(0, 2**63)):016x}" if i % 3 else h, unit(rng.normal(size=8)) if i % 4 else None
        )
        for i in range(40)
    ]
    groups = near_duplicate_groups(many, S)
    member = {sha: gi for gi, g in enumerate(groups) for sha in g}
    for i, x in enumerate(many):
        for y in many[i + 1 :]:
            if is_near_duplicate(x, y, S):
                assert member.get(x.sha256) is not None and member.get(x.sha256) == member.get(y.sha256)
    assert near_duplicate_groups([("only", h, None)], S) == []


def test_embeddings_of_another_length_fall_back_to_phash_only() -> None:
    h = "0123456789abcdef"
    a = DedupItem("a", h, unit(np.ones(512)))
    b = DedupItem("b", flip_bits(h, 3), unit(np.ones(768)))  # e.g. after switching CLIP model
    c = DedupItem("c", flip_bits(h, 8), unit(np.ones(512)))
    assert is_near_duplicate(a, b, S)  # 3 bits, pHash-only rule
    assert not is_near_duplicate(b, c, S)  # 5 bits: too far for the pHash-only rule
    assert is_near_duplicate(a, c, S)  # 8 bits and cosine 1: the full rule
    assert near_duplicate_groups([a, b, c], S) == [["a", "b", "c"]]


def _reencoded(src: Path, how: str) -> str:
    im = Image.open(src).convert("RGB")
    if how == "jpeg":
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=70)
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    elif how == "resize":
        im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.LANCZOS)
    elif how == "brighter":
        im = ImageEnhance.Brightness(im).enhance(1.1)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return phash_hex(decode(Path(f"{how}.png"), buf.getvalue()))


@pytest.mark.shared_data
def test_real_reencodings_group_and_distinct_images_do_not(shared_data: Path) -> None:
    files = sorted((shared_data / "ai_portraits_hands" / "image").glob("*.png"))
    items: list[tuple[str, str, np.ndarray | None]] = []
    for f in files[:3]:
        items.append((f.stem, _reencoded(f, "png"), None))
        for how in ("jpeg", "resize", "brighter"):
            items.append((f"{f.stem}-{how}", _reencoded(f, how), None))
    groups = near_duplicate_groups(items, S)
    assert sorted(groups) == sorted(
        [sorted([f.stem] + [f"{f.stem}-{h}" for h in ("jpeg", "resize", "brighter")]) for f in files[:3]]
    )


def test_rule_description_states_the_thresholds() -> None:
    with_emb = rule_description(S, embeddings_available=True)
    assert "Hamming <= 8" in with_emb and "cosine >= 0.95" in with_emb
    alone = rule_description(S, embeddings_available=False)
    assert alone.startswith("near-duplicates: pHash Hamming <= 4") and "unavailable" in alone


def test_pairs_of_new_items_joined_with_the_old_groups_give_the_groups_of_all() -> None:
    """What the incremental refresh relies on: groups among the old items, joined by the pairs
    that involve a new item, are the groups of everything (embeddings missing on some)."""
    from core.dedup import near_duplicate_pairs
    from core.unionfind import UnionFind

    rng = np.random.default_rng(5)
    bases = [unit(rng.normal(size=32)) for _ in range(6)]
    items = []
    for i in range(60):
        b = int(rng.integers(len(bases)))
        h = flip_bits(f"{0x0F0F0F0F0F0F0F0F * (b + 1) & 0xFFFFFFFFFFFFFFFF:016x}", int(rng.integers(0, 10)))
        emb = None if i % 7 == 0 else unit(bases[b] + 0.05 * unit(rng.normal(size=32)))
        items.append(DedupItem(f"s{i:02}", h, emb))
    for cut in (0, 1, 30, 59):
        old, new = items[:cut], range(cut, len(items))
        uf: UnionFind[str] = UnionFind()
        for g in near_duplicate_groups(old, S):
            for s in g[1:]:
                uf.join(g[0], s)
        pairs = near_duplicate_pairs(items, list(new), S)
        # Compared in blocks of a few rows (a 30,000-image drop against 40,000 needs them to fit
        # in memory): the same pairs as in one block.
        assert near_duplicate_pairs(items, list(new), S, max_cells=3 * len(items)) == pairs
        for a, b in pairs:
            uf.join(a, b)
        comps: dict[str, list[str]] = {}
        for it in items:
            comps.setdefault(uf.find(it.sha256), []).append(it.sha256)
        got = sorted((sorted(g) for g in comps.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
        assert got == near_duplicate_groups(items, S), cut
        assert any(len(g) > 2 for g in got)
