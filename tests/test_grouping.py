from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import GroupingSettings
from core.grouping import LooseImage, group_loose, set_id_for

CFG = GroupingSettings(quiet_seconds=10, time_window_seconds=600, phash_max_distance=10)


def img(
    i: int,
    key: str | None = None,
    phash: int | None = None,
    mtime: float | None = None,
    arrived: float = 0.0,
    emb: np.ndarray | None = None,
) -> LooseImage:
    return LooseImage(
        f"{i:064x}",
        f"img_{i:03}.png",
        float(i) if mtime is None else mtime,
        arrived,
        meta_key=key,
        seed=i,
        phash=phash,
        embedding=emb,
    )


def test_same_prompt_groups_and_closes_at_four() -> None:
    imgs = [img(i, "prompt:a") for i in range(6)]
    groups = group_loose(imgs, CFG, now=1.0)
    assert [len(g.members) for g in groups] == [4, 2]
    assert groups[0].closed and "full (4 images)" in groups[0].reason
    assert "same prompt 'a' (seeds 0..3)" in groups[0].reason
    assert not groups[1].closed


def test_quiet_period_closes_and_set_of_one_says_so() -> None:
    groups = group_loose([img(1, "prompt:a")], CFG, now=100.0)
    assert groups[0].closed and "set of 1" in groups[0].reason


def test_different_prompts_never_mix_even_if_similar() -> None:
    groups = group_loose([img(1, "prompt:a", phash=0), img(2, "prompt:b", phash=0)], CFG, now=0)
    assert len(groups) == 2


def test_visual_grouping_without_metadata() -> None:
    a, b, far = 0x0F0F0F0F0F0F0F0F, 0x0F0F0F0F0F0F0F0E, ~0x0F0F0F0F0F0F0F0F & (2**64 - 1)
    groups = group_loose([img(1, phash=a), img(2, phash=b), img(3, phash=far)], CFG, now=0)
    sizes = sorted(len(g.members) for g in groups)
    assert sizes == [1, 2]
    pair = next(g for g in groups if len(g.members) == 2)
    assert "pHash distance 1" in pair.reason


def test_embeddings_join_when_phash_disagrees() -> None:
    e = np.ones(8, dtype=np.float32) / np.sqrt(8)
    groups = group_loose([img(1, phash=0, emb=e), img(2, phash=2**64 - 1, emb=e)], CFG, now=0)
    assert len(groups) == 1 and "embedding cosine" in groups[0].reason


def test_time_window_splits() -> None:
    groups = group_loose([img(1, "prompt:a", mtime=0), img(2, "prompt:a", mtime=10_000)], CFG, now=0)
    assert len(groups) == 2


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["prompt:a", "prompt:b", None]), st.integers(0, 2**64 - 1)), min_size=1, max_size=14
    ),
    st.randoms(),
)
def test_grouping_ignores_input_order(items: list[tuple[str | None, int]], rnd: random.Random) -> None:
    imgs = [img(i, k, ph) for i, (k, ph) in enumerate(items)]
    a = group_loose(imgs, CFG, now=0)
    shuffled = imgs[:]
    rnd.shuffle(shuffled)
    b = group_loose(shuffled, CFG, now=0)
    assert [[m.sha256 for m in g.members] for g in a] == [[m.sha256 for m in g.members] for g in b]
    assert all(len(g.members) <= CFG.max_set_size for g in a)
    assert sorted(m.sha256 for g in a for m in g.members) == sorted(i.sha256 for i in imgs)


def test_set_id_is_order_independent() -> None:
    assert set_id_for(["b", "a"]) == set_id_for(["a", "b"]) != set_id_for(["a", "c"])
