from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO


def test_bootstrap_without_a_suitable_python_says_how_to_get_one(tmp_path: Path) -> None:
    """PATH holds only the shell tools and a python3 that is 3.13: the script must stop and say
    how to install 3.11/3.12 (Homebrew, python.org, uv) before touching .venv."""
    script = (REPO / "scripts" / "bootstrap").read_text()
    if any(Path(p).exists() for p in re.findall(r"(/(?:opt|usr|Library)/\S+/python3\.1[12])", script)):
        pytest.skip("this machine has a Python 3.11/3.12 at a fixed path the script also tries")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    fake = bin_dir / "python3"
    fake.write_text("#!/bin/sh\nexit 1\n")  # answers "no" to the version check, like a 3.13 would
    fake.chmod(0o755)
    res = subprocess.run(
        [str(bin_dir / "bash"), str(REPO / "scripts" / "bootstrap")],
        capture_output=True,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "PATH"}, "PATH": str(bin_dir)},
        timeout=60,
        check=False,
    )
    assert res.returncode == 1
    for way in ("brew install python@3.12", "python.org", "uv python install 3.12"):
        assert way in res.stderr, res.stderr
