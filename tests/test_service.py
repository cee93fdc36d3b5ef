from __future__ import annotations

import plistlib
from pathlib import Path

from daemon import service
from tests.helpers import bestshot


def test_launchd_plist_content(tmp_path: Path) -> None:
    home = tmp_path / "home"
    res = bestshot(
        "service", "install", "--no-load", "--platform", "darwin", "--home", str(home), root=tmp_path / "root"
    )
    target = home / "Library" / "LaunchAgents" / "com.bestshot.agent.plist"
    assert f"wrote {target}" in res.stdout
    pl = plistlib.loads(target.read_bytes())
    assert pl["Label"] == "com.bestshot.agent"
    assert pl["RunAtLoad"] is True and pl["KeepAlive"] == {"SuccessfulExit": False}
    assert pl["ThrottleInterval"] >= 10 and pl["ProcessType"] == "Background" and pl["LowPriorityIO"] is True
    args = pl["ProgramArguments"]
    assert Path(args[0]).is_absolute() and args[1:5] == ["-m", "daemon.cli", "run", "--root"]
    assert args[5] == str(tmp_path / "root")
    assert pl["StandardErrorPath"].startswith(str(tmp_path / "root" / "logs"))
    assert pl["EnvironmentVariables"]["HF_HUB_OFFLINE"] == "1"
    bestshot("service", "uninstall", "--no-load", "--platform", "darwin", "--home", str(home), root=tmp_path)
    assert not target.exists()


def test_systemd_unit_content(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bestshot("service", "install", "--no-load", "--platform", "linux", "--home", str(home), root=tmp_path / "r r")
    unit = (home / ".config" / "systemd" / "user" / "bestshot.service").read_text()
    assert "Restart=on-failure" in unit and "-m daemon.cli run --root" in unit
    assert f'"{tmp_path / "r r"}"' in unit


def test_full_disk_access_warning() -> None:
    home = Path("/Users/me")
    assert service.fda_warning(home / "Documents" / "gen", home) is not None
    assert service.fda_warning(home / "bestshot", home) is None


def test_example_plist_in_repo_matches_generator() -> None:
    repo = Path(__file__).resolve().parent.parent
    example = plistlib.loads((repo / "launchd" / "com.bestshot.agent.plist").read_bytes())
    generated = service.launchd_plist(
        service.ServiceSpec(
            python=Path("/Users/you/bestshot/.venv/bin/python"),
            root=Path("/Users/you/bestshot-data"),
            config=None,
            log_dir=Path("/Users/you/bestshot-data/logs"),
            home=Path("/Users/you"),
        )
    )
    assert example == generated
