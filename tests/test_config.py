from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.config import Config, load_config
from core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("watch:\n  stable_secondz: 2\n", "watch.stable_secondz"),  # an unknown key is rejected and named
        ("grouping:\n  max_set_size: 0\n", "grouping.max_set_size"),  # a bad value names its field
        ("extractors:\n  unload_idle_seconds: 0\n", "extractors.unload_idle_seconds"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    assert field in str(e.value)


def test_bad_yaml_config_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("watch: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f, env={})


def test_env_overrides_file_and_root_flag_wins(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("watch:\n  stable_seconds: 2\nroot: /elsewhere\n")
    cfg = load_config(f, root=tmp_path, env={"BESTSHOT_WATCH__STABLE_SECONDS": "5", "BESTSHOT_MODE": "watch"})
    assert cfg.watch.stable_seconds == 5
    assert cfg.mode == "watch"
    assert cfg.root == tmp_path
    assert cfg.path("approved") == tmp_path / "exports" / "approved"
    assert cfg.db_url == f"sqlite:///{tmp_path / 'bestshot.sqlite'}"


def test_unknown_env_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"grouping\.nope"):
        load_config(env={"BESTSHOT_GROUPING__NOPE": "1"})


def test_shipped_default_config_matches_the_model() -> None:
    shipped = yaml.safe_load((REPO / "config" / "bestshot.yaml").read_text())
    defaults = Config().model_dump(mode="json")
    shipped.pop("root", None)
    defaults.pop("root", None)
    assert shipped == defaults, "regenerate with: .venv/bin/python scripts/gen_config.py"


def test_shipped_schema_matches_the_model() -> None:
    # The schema documents every field for users; a new setting without it goes unexplained.
    shipped = json.loads((REPO / "config" / "schema.json").read_text())
    assert shipped == Config.model_json_schema(), "regenerate with: .venv/bin/python scripts/gen_config.py"
