"""`bestshot train` run while the daemon runs: the daemon puts what it learned in force."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import DaemonProc, bestshot, status, wait_for, write_config


def test_daemon_uses_the_calibration_a_separate_train_run_learned(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_config(root)
    with DaemonProc(root) as daemon:
        assert status(root)["anomaly_calibration"] is None
        out = bestshot("train", root=root).stdout
        assert "train:" in out
        version = status(root)["anomaly_calibration"]["version"]
        wait_for(
            lambda: f"anomaly_calibration {version}" in daemon.output(),
            timeout=30,
            what="the daemon to load the new calibration",
        )
