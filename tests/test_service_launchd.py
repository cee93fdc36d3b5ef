"""`bestshot service` against a stand-in for macOS's launchctl (tests/fake_launchctl.py).

launchd itself cannot run here; the fake reproduces its documented behaviour that matters: the
"Bootstrap failed: 5" race after a bootout, a disabled job refusing to bootstrap, and the fields
`launchctl print` shows. What remains unrun on a real Mac: launchd's actual timing, and
`launchctl print`'s exact text on each macOS release (parsed best effort).
"""

from __future__ import annotations

import json
import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import service
from tests.helpers import REPO

FAKE = REPO / "tests" / "fake_launchctl.py"


@pytest.fixture
def launchctl(tmp_path: Path) -> Path:
    """A `launchctl` on PATH that is the fake; returns its state folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "launchctl"
    exe.write_text(f"#!{sys.executable}\nimport runpy, sys\nrunpy.run_path({str(FAKE)!r}, run_name='__main__')\n")
    exe.chmod(0o755)
    state = tmp_path / "launchctl-state"
    state.mkdir()
    return state


def _service(tmp_path: Path, state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = dict(
        os.environ,
        PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        FAKE_LAUNCHCTL_DIR=str(state),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "service", *args, "--platform", "darwin", "--home", str(tmp_path / "h")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full_env,
        timeout=120,
        check=False,
    )


def _calls(state: Path) -> list[str]:
    return (state / "calls.log").read_text().splitlines()


def test_install_waits_for_the_bootout_before_bootstrapping(tmp_path: Path, launchctl: Path) -> None:
    # A job is loaded and running: reinstalling must not race its teardown.
    (launchctl / "state.json").write_text(json.dumps({"loaded": True, "pid": 999}))
    res = _service(tmp_path, launchctl, "install", "--root", str(tmp_path / "lib"), FAKE_LAUNCHCTL_TEARDOWN="1.0")
    assert res.returncode == 0, res.stdout + res.stderr
    calls = _calls(launchctl)
    verbs = [c.split()[0] for c in calls]
    assert verbs[0] == "bootout"
    first_bootstrap = verbs.index("bootstrap")
    assert "print" in verbs[:first_bootstrap]  # it waited for launchd to let go of the old job
    assert "enable" in verbs[:first_bootstrap]
    assert verbs.count("bootstrap") == 1  # no "Bootstrap failed: 5" on the way
    assert json.loads((launchctl / "state.json").read_text())["loaded"] is True
    assert "loaded gui/" in res.stdout


def test_install_enables_a_disabled_job(tmp_path: Path, launchctl: Path) -> None:
    (launchctl / "state.json").write_text(json.dumps({"loaded": False, "disabled": True}))
    res = _service(tmp_path, launchctl, "install", "--root", str(tmp_path / "lib"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((launchctl / "state.json").read_text())["loaded"] is True


def test_install_that_cannot_load_exits_non_zero_with_the_reason(tmp_path: Path, launchctl: Path) -> None:
    res = _service(tmp_path, launchctl, "install", "--root", str(tmp_path / "lib"), FAKE_LAUNCHCTL_BROKEN="1")
    assert res.returncode != 0
    assert "Bootstrap failed: 5: Input/output error" in res.stderr
    assert f"failed {service.BOOTSTRAP_TRIES} times" in res.stderr
    assert [c.split()[0] for c in _calls(launchctl)].count("bootstrap") == service.BOOTSTRAP_TRIES  # bounded
    assert "wrote " in res.stdout  # what was done before the failure is shown


def test_service_status_shows_state_pid_last_exit_and_logs(tmp_path: Path, launchctl: Path) -> None:
    lib = tmp_path / "lib"
    assert _service(tmp_path, launchctl, "install", "--root", str(lib)).returncode == 0
    res = _service(tmp_path, launchctl, "status")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "state:      running" in out and "pid:        5151" in out and "last exit:  0" in out
    assert str(lib / "logs" / "bestshot.log") in out and str(lib / "logs" / "launchd.err.log") in out
    (launchctl / "state.json").write_text(json.dumps({"loaded": False}))
    assert "state:      not loaded" in _service(tmp_path, launchctl, "status").stdout


def test_a_unit_pointing_at_an_old_module_is_reported_and_migrated(tmp_path: Path, launchctl: Path) -> None:
    target = service.plist_path(tmp_path / "h")
    target.parent.mkdir(parents=True)
    old = {"Label": service.LABEL, "ProgramArguments": [sys.executable, "-m", "bestshot.daemon", "run"]}
    target.write_bytes(plistlib.dumps(old))
    assert "OUTDATED" in _service(tmp_path, launchctl, "status").stdout
    res = _service(tmp_path, launchctl, "install", "--no-load", "--root", str(tmp_path / "lib"))
    assert res.returncode == 0 and f"migrated {target}" in res.stdout and "bestshot.daemon" in res.stdout
    assert plistlib.loads(target.read_bytes())["ProgramArguments"][1:3] == ["-m", "daemon.cli"]
    assert "OUTDATED" not in _service(tmp_path, launchctl, "status").stdout


def test_full_disk_access_covers_every_protected_place_case_insensitively() -> None:
    home = Path("/Users/me")
    for place in (
        home / "documents" / "gen",  # typed in another case: APFS is case-insensitive
        home / "DESKTOP" / "x",
        home / "Downloads",
        home / "Library" / "Mobile Documents" / "com~apple~CloudDocs" / "bestshot",  # iCloud Drive
        Path("/Volumes/Photos/bestshot"),
    ):
        assert service.fda_findings({"the root": place}, home), place
    assert service.fda_findings({"the root": home / "bestshot"}, home) == []
    # The code and its venv must be readable by launchd too, not only the root.
    found = service.fda_findings(
        {"the root": home / "bestshot", "the code": home / "Documents" / "src" / "bestshot"}, home
    )
    assert len(found) == 1 and found[0].startswith("the code")


def test_full_disk_access_fix_names_the_real_python_binary(tmp_path: Path) -> None:
    real = Path(sys.executable).resolve()
    link = tmp_path / "venv" / "bin" / "python"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    text = service.fda_warning(Path("/Users/me/Documents/gen"), Path("/Users/me"), python=None)
    assert text is not None and str(real) in text
    if Path(sys.executable) != real:
        assert f"{sys.executable} " not in text


def test_units_run_the_daemon_in_service_mode_so_it_logs_once(tmp_path: Path) -> None:
    spec = service.default_spec(tmp_path / "lib", None, tmp_path / "h")
    assert service.launchd_plist(spec)["ProgramArguments"][-1] == "--service"
    assert service.systemd_unit(spec).split("ExecStart=")[1].splitlines()[0].endswith(" --service")


def test_under_launchd_the_daemon_writes_one_rotated_log(tmp_path: Path) -> None:
    """As launchd starts it (`run --service`): stdout and stderr appended to files nobody rotates."""
    from tests.helpers import textured, wait_for, write_config, write_png

    root = tmp_path / "lib"
    write_config(root, {"extractors": {"enabled": ["phash", "hands"]}})
    logs = root / "logs"
    logs.mkdir(parents=True)
    err = logs / "launchd.err.log"
    own = logs / "bestshot.log"
    with err.open("ab") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "--root", str(root), "--service"],
            stdout=f,
            stderr=f,
            cwd=REPO,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        wait_for(lambda: own.exists() and "daemon running" in own.read_text(), timeout=60, what="daemon start")
        write_png(root / "inbox" / "a.png", textured(1, 192, 256))
        wait_for(lambda: "sidecars: 1 of 1 images done" in own.read_text(), timeout=90, what="hands sidecar")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "stopped" in own.read_text()
    text = err.read_text()
    for leaked in ("daemon running", "filed single image", "XNNPACK", "W0000"):
        assert leaked not in text, text[-2000:]
