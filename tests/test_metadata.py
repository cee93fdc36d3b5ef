from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import MetadataError
from core.metadata import parse_a1111, parse_comfy, parse_metadata, sidecar_candidates

A1111 = (
    "photo of a woman on a beach, golden hour\n"
    "Negative prompt: blurry, extra fingers\n"
    "Steps: 30, Sampler: DPM++ 2M, CFG scale: 7, Seed: 12345, Size: 832x1216, Model: juggernautXL"
)


def test_a1111_parameters() -> None:
    d = parse_a1111(A1111)
    assert d["prompt"] == "photo of a woman on a beach, golden hour"
    assert d["negative_prompt"] == "blurry, extra fingers"
    assert d["seed"] == "12345" and d["model"] == "juggernautXL"


def test_comfy_graph() -> None:
    graph = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 77, "steps": 20}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a man in a suit"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad hands"}},
    }
    d = parse_comfy(json.dumps(graph))
    assert d == {"seed": 77, "prompt": "a man in a suit", "negative_prompt": "bad hands"}


def test_precedence_yaml_over_caption_over_png() -> None:
    meta = parse_metadata(
        {"parameters": A1111},
        [(Path("a.txt"), "caption text"), (Path("a.yaml"), "prompt: from yaml\nbatch_id: b7\n")],
        (Path("meta.yaml"), "model: sdxl\nseed: 1\n"),
    )
    assert meta.prompt == "from yaml"
    assert meta.batch_id == "b7" and meta.group_key() == "batch:b7"
    assert meta.seed == 12345  # PNG chunk beats the folder's meta.yaml
    assert meta.raw["caption"] == "caption text"
    assert meta.sources[0] == "folder:meta.yaml"


def test_caption_only() -> None:
    meta = parse_metadata({}, [(Path("x.caption"), "  A Man,  smiling \n")])
    assert meta.prompt == "A Man,  smiling"
    assert meta.group_key() == "prompt:a man, smiling"


def test_bad_yaml_names_file_and_line() -> None:
    with pytest.raises(MetadataError) as e:
        parse_metadata({}, [(Path("img.yaml"), "prompt: ok\nseed: [1, 2\n")])
    assert e.value.path == Path("img.yaml")
    assert "line" in e.value.reason


def test_yaml_that_is_not_a_mapping() -> None:
    with pytest.raises(MetadataError, match="mapping"):
        parse_metadata({}, [(Path("img.yaml"), "- a\n- b\n")])


def test_sidecar_candidates_cover_both_conventions() -> None:
    names = [p.name for p in sidecar_candidates(Path("/x/img.png"), [".yaml", ".yml"], [".txt", ".caption"])]
    assert {"img.png.yaml", "img.yaml", "img.yml", "img.txt", "img.caption"} <= set(names)


def test_seed_too_big_for_a_64_bit_column_is_kept_raw_only() -> None:
    meta = parse_metadata({}, [(Path("a.yaml"), f"prompt: x\nseed: {2**64 + 5}\n")])
    assert meta.seed is None and meta.raw["seed"] == 2**64 + 5
    assert parse_metadata({}, [(Path("a.yaml"), "seed: .inf\n")]).seed is None


def test_yaml_aliases_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"
    with pytest.raises(MetadataError, match="aliases"):
        parse_metadata({}, [(Path("bomb.yaml"), bomb)])


def test_comfy_graph_with_odd_node_types() -> None:
    assert parse_comfy(json.dumps({"1": {"class_type": 5, "inputs": {"text": "t", "seed": "12"}}})) == {"seed": 12}
