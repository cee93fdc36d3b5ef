from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.atomicfile import atomic_write
from core.unionfind import UnionFind


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.json"
    atomic_write(target, b"old")
    assert target.read_bytes() == b"old"

    def fails(f: BinaryIO) -> None:
        f.write(b"half")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError):
        atomic_write(target, fails)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]  # no temp file left behind


def test_atomic_write_takes_a_writer(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    atomic_write(target, lambda f: pq.write_table(pa.table({"a": [1, 2]}), f))
    assert pq.read_table(target).column("a").to_pylist() == [1, 2]


def test_union_find_roots_are_the_smallest_member() -> None:
    uf: UnionFind[str] = UnionFind()
    uf.join("d", "c")
    uf.join("b", "d")
    uf.join("x", "y")
    assert uf.roots() == {"d": "b", "c": "b", "b": "b", "x": "x", "y": "x"}
