"""Prompt metadata from YAML sidecars, caption files, a set folder's meta.yaml and PNG text chunks.

The daemon reads the files; this module only finds candidate names and parses text. Bad YAML is
a MetadataError for that image (with the file and the parser's position), never a crash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import MetadataError
from core.layout import fits_name

FOLDER_META_NAMES = ("meta.yaml", "meta.yml")
_PROMPT_KEYS = ("prompt", "positive", "positive_prompt", "caption", "text", "txt")
_NEG_KEYS = ("negative_prompt", "negative", "neg_prompt")
_SEED_KEYS = ("seed", "noise_seed")
_BATCH_KEYS = ("batch_id", "batch", "job_id", "group")
_MODEL_KEYS = ("model", "checkpoint", "ckpt", "model_name")


@dataclass(frozen=True)
class ImageMeta:
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    batch_id: str | None = None
    model: str | None = None
    sources: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    def group_key(self) -> str | None:
        """Images that share this key came from one generation request."""
        if self.batch_id:
            return f"batch:{self.batch_id}"
        if self.prompt:
            return "prompt:" + normalise_prompt(self.prompt)
        return None


def normalise_prompt(prompt: str) -> str:
    return re.sub(r"\s+", " ", prompt).strip().lower()


def sidecar_candidates(image: Path, yaml_suffixes: list[str], caption_suffixes: list[str]) -> list[Path]:
    """Per-image metadata files that may sit next to `image`, most specific first. A name that
    would be over the file-name limit (a valid 250-byte image name + ".caption") cannot exist,
    and asking the file system about it fails: it is not a candidate."""
    out = [image.with_name(image.name + s) for s in yaml_suffixes]
    out += [image.with_suffix(s) for s in yaml_suffixes]
    out += [image.with_suffix(s) for s in caption_suffixes]
    out += [image.with_name(image.name + s) for s in caption_suffixes]
    return [p for p in out if fits_name(p.name)]


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> Any:
    lowered = {str(k).lower(): v for k, v in d.items()}
    for k in keys:
        if lowered.get(k) not in (None, ""):
            return lowered[k]
    return None


_INT64 = 2**63


def _as_int(v: Any) -> int | None:
    """An integer that fits a 64-bit column; anything else (inf, 2**64 seeds, text) is None.
    The value itself is kept in `raw`."""
    try:
        n = int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return n if n is not None and -_INT64 <= n < _INT64 else None


MAX_YAML_DEPTH = 100  # metadata is a flat mapping; nesting this deep is an attack or an accident


class _NoAliasLoader(yaml.composer.Composer, yaml.CSafeLoader):
    """Safe YAML without anchors/aliases: metadata never needs them, and nested aliases can
    expand exponentially (a "billion laughs" file would hang the daemon). Nesting is limited
    too: the composer recurses per level, and 20,000 levels would overflow Python's stack.

    libyaml (PyYAML's C extension, in its wheels; CSafeLoader) scans and parses, a tenth of the
    pure-Python SafeLoader's time per file; PyYAML's own Python composer, placed before it, builds
    the nodes from libyaml's events so that these checks run on every node. A PyYAML without
    libyaml fails here, at import, rather than reading metadata ten times slower."""

    _depth = 0

    def __init__(self, stream: str) -> None:
        yaml.CSafeLoader.__init__(self, stream)
        yaml.composer.Composer.__init__(self)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed in metadata", self._mark())
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels (the limit for metadata)", self._mark()
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _mark(self) -> Any:  # libyaml's Mark: line and column, as the error message reads them
        event = self.peek_event()
        return event.start_mark if event is not None else None


MAX_METADATA_BYTES = 1 << 20
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"  # libyaml's flow-level limit (1000), met by its scanner


def _load_yaml(text: str, where: Path) -> dict[str, Any]:
    if len(text) > MAX_METADATA_BYTES:
        raise MetadataError(where, f"metadata file is over {MAX_METADATA_BYTES} bytes")
    try:
        doc = yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if problem == _LIBYAML_TOO_DEEP:  # libyaml's scanner reads ahead, and met its own limit first
            problem = f"nested deeper than {MAX_YAML_DEPTH} levels (the limit for metadata)"
        raise MetadataError(where, f"invalid YAML{pos}: {problem}") from e
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise MetadataError(where, f"YAML must be a mapping of keys, got {type(doc).__name__}")
    return {str(k): v for k, v in doc.items()}


_A1111_KV = re.compile(r"\s*([\w .\-/]+):\s*(\"(?:[^\"\\]|\\.)*\"|[^,]*)(?:,|$)")


def parse_a1111(parameters: str) -> dict[str, Any]:
    """AUTOMATIC1111/Forge `parameters` chunk: prompt, optional negative, then `Key: value, ...`."""
    lines = parameters.strip().split("\n")
    settings_line = lines.pop() if lines and re.match(r"^\s*Steps:", lines[-1]) else ""
    text = "\n".join(lines)
    prompt, _, negative = text.partition("Negative prompt:")
    out: dict[str, Any] = {"prompt": prompt.strip()}
    if negative:
        out["negative_prompt"] = negative.strip()
    for m in _A1111_KV.finditer(settings_line):
        out[m.group(1).strip().lower().replace(" ", "_")] = m.group(2).strip().strip('"')
    return out


def parse_comfy(prompt_json: str) -> dict[str, Any]:
    """ComfyUI `prompt` chunk (the API graph): pull seed and the positive text from its nodes."""
    try:
        graph = json.loads(prompt_json)
    except json.JSONDecodeError:
        return {}
    if not isinstance(graph, dict):
        return {}
    out: dict[str, Any] = {}
    texts: list[str] = []
    for node in graph.values():
        if not isinstance(node, dict):
            continue
        inputs = node.get("inputs") or {}
        if not isinstance(inputs, dict):
            continue
        for key in _SEED_KEYS:
            if key in inputs and _as_int(inputs[key]) is not None:
                out.setdefault("seed", _as_int(inputs[key]))
        cls = node.get("class_type")
        if isinstance(cls, str) and cls.startswith("CLIPTextEncode") and isinstance(inputs.get("text"), str):
            texts.append(inputs["text"])
    if texts:
        out["prompt"] = texts[0]
        if len(texts) > 1:
            out["negative_prompt"] = texts[1]
    return out


def parse_metadata(
    text_chunks: dict[str, str],
    sidecar_texts: list[tuple[Path, str]],
    folder_meta: tuple[Path, str] | None = None,
) -> ImageMeta:
    """Merge sources, most specific last: folder meta.yaml < PNG chunks < caption < per-image YAML."""
    merged: dict[str, Any] = {}
    sources: list[str] = []
    if folder_meta is not None:
        merged.update(_load_yaml(folder_meta[1], folder_meta[0]))
        sources.append(f"folder:{folder_meta[0].name}")
    if "parameters" in text_chunks:
        merged.update(parse_a1111(text_chunks["parameters"]))
        sources.append("png:parameters")
    elif "prompt" in text_chunks:
        merged.update(parse_comfy(text_chunks["prompt"]))
        sources.append("png:prompt")
    for key in ("Description", "Comment", "description", "comment"):
        if key in text_chunks and "prompt" not in merged:
            merged["prompt"] = text_chunks[key]
            sources.append(f"png:{key}")
    for path, text in sidecar_texts:
        if path.suffix.lower() in (".yaml", ".yml"):
            merged.update(_load_yaml(text, path))
        else:
            caption = text.strip()
            if caption:
                merged.setdefault("caption", caption)
                if not _first(merged, ("prompt",)):
                    merged["prompt"] = caption
        sources.append(f"file:{path.name}")
    prompt = _first(merged, _PROMPT_KEYS)
    return ImageMeta(
        prompt=str(prompt) if prompt is not None else None,
        negative_prompt=_str_or_none(_first(merged, _NEG_KEYS)),
        seed=_as_int(_first(merged, _SEED_KEYS)),
        batch_id=_str_or_none(_first(merged, _BATCH_KEYS)),
        model=_str_or_none(_first(merged, _MODEL_KEYS)),
        sources=tuple(sources),
        raw=json.loads(json.dumps(merged, default=str)),
    )


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)
