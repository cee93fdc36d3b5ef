"""Regenerate config/bestshot.yaml (every key at its default) and config/schema.json from the model."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from core.config import Config

HEADER = """\
# bestshot configuration: every key at its default value.
# Copy to <root>/bestshot.yaml (or pass --config) and change what you need; unknown keys are
# rejected. Any key can also be set from the environment as BESTSHOT_<SECTION>__<KEY>, e.g.
# BESTSHOT_WATCH__STABLE_SECONDS=2. Field documentation: config/schema.json and core/config.py.
"""


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    data = Config().model_dump(mode="json")
    data["root"] = "data"
    (repo / "config" / "bestshot.yaml").write_text(HEADER + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (repo / "config" / "schema.json").write_text(json.dumps(Config.model_json_schema(), indent=2) + "\n")


if __name__ == "__main__":
    main()
