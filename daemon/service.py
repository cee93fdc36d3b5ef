"""LaunchAgent (macOS) and systemd user unit (Linux) generation and installation."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL = "com.bestshot.agent"
PROTECTED_DIRS = ("Documents", "Desktop", "Downloads")


@dataclass(frozen=True)
class ServiceSpec:
    python: Path  # the venv's interpreter, absolute: launchd has no PATH or shell
    root: Path
    config: Path | None
    log_dir: Path
    home: Path

    def program_arguments(self) -> list[str]:
        args = [str(self.python), "-m", "daemon.cli", "run", "--root", str(self.root)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        return args


def default_spec(root: Path, config: Path | None, home: Path | None = None) -> ServiceSpec:
    root = root.expanduser().absolute()
    return ServiceSpec(
        python=Path(sys.executable).absolute(),
        root=root,
        config=config.expanduser().absolute() if config else None,
        log_dir=root / "logs",
        home=(home or Path.home()),
    )


def launchd_plist(spec: ServiceSpec) -> dict[str, Any]:
    return {
        "Label": LABEL,
        "ProgramArguments": spec.program_arguments(),
        "WorkingDirectory": str(spec.root),
        "RunAtLoad": True,
        # Restart after a crash, not after a clean stop; ThrottleInterval spaces restarts so a
        # crash loop cannot spin (launchd's own minimum is 10 s).
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 30,
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "LowPriorityBackgroundIO": True,
        "Nice": 10,
        "StandardOutPath": str(spec.log_dir / "launchd.out.log"),
        "StandardErrorPath": str(spec.log_dir / "launchd.err.log"),
        "EnvironmentVariables": {
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",  # never reach the network at run time
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        },
    }


def launchd_plist_bytes(spec: ServiceSpec) -> bytes:
    return plistlib.dumps(launchd_plist(spec), fmt=plistlib.FMT_XML, sort_keys=False)


def systemd_unit(spec: ServiceSpec) -> str:
    cmd = " ".join(_quote(a) for a in spec.program_arguments())
    return f"""[Unit]
Description=bestshot: learns to pick, crop and reject generated images
After=default.target

[Service]
Type=simple
ExecStart={cmd}
WorkingDirectory={_quote(str(spec.root))}
Restart=on-failure
RestartSec=30
Nice=10
IOSchedulingClass=idle
Environment=PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
KillSignal=SIGTERM
TimeoutStopSec=20

[Install]
WantedBy=default.target
"""


def _quote(s: str) -> str:
    return f'"{s}"' if any(c.isspace() for c in s) else s


def plist_path(home: Path) -> Path:
    return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def unit_path(home: Path) -> Path:
    return home / ".config" / "systemd" / "user" / "bestshot.service"


def fda_warning(root: Path, home: Path) -> str | None:
    """launchd jobs cannot read these folders without Full Disk Access."""
    for d in PROTECTED_DIRS:
        if root == home / d or (home / d) in root.parents:
            return (
                f"{root} is inside ~/{d}: a launchd job cannot read it without Full Disk Access. "
                f"Move the root (e.g. ~/bestshot) or grant Full Disk Access to {sys.executable} in "
                "System Settings > Privacy & Security > Full Disk Access."
            )
    return None


def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return f"$ {' '.join(cmd)} -> exit {res.returncode} {res.stderr.strip()}".rstrip()


def install(spec: ServiceSpec, *, load: bool = True, platform: str = sys.platform) -> list[str]:
    done: list[str] = []
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    if platform == "darwin":
        target = plist_path(spec.home)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(launchd_plist_bytes(spec))
        done.append(f"wrote {target}")
        if warn := fda_warning(spec.root, spec.home):
            done.append("WARNING: " + warn)
        if load:
            uid = os.getuid()
            done.append(_run(["launchctl", "bootout", f"gui/{uid}", str(target)]))
            done.append(_run(["launchctl", "bootstrap", f"gui/{uid}", str(target)]))
    else:
        target = unit_path(spec.home)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(systemd_unit(spec), encoding="utf-8")
        done.append(f"wrote {target}")
        if load:
            done.append(_run(["systemctl", "--user", "daemon-reload"]))
            done.append(_run(["systemctl", "--user", "enable", "--now", "bestshot.service"]))
    return done


def uninstall(home: Path, *, load: bool = True, platform: str = sys.platform) -> list[str]:
    done: list[str] = []
    if platform == "darwin":
        target = plist_path(home)
        if load and target.exists():
            done.append(_run(["launchctl", "bootout", f"gui/{os.getuid()}", str(target)]))
    else:
        target = unit_path(home)
        if load and target.exists():
            done.append(_run(["systemctl", "--user", "disable", "--now", "bestshot.service"]))
    if target.exists():
        target.unlink()
        done.append(f"removed {target}")
    else:
        done.append(f"nothing installed at {target}")
    return done


def service_status(home: Path, platform: str = sys.platform) -> list[str]:
    target = plist_path(home) if platform == "darwin" else unit_path(home)
    lines = [f"{'installed' if target.exists() else 'not installed'}: {target}"]
    if target.exists():
        cmd = (
            ["launchctl", "print", f"gui/{os.getuid()}/{LABEL}"]
            if platform == "darwin"
            else ["systemctl", "--user", "is-active", "bestshot.service"]
        )
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10)
            lines.append(res.stdout.strip().splitlines()[0] if res.stdout.strip() else f"exit {res.returncode}")
        except (OSError, subprocess.TimeoutExpired) as e:
            lines.append(f"cannot query the service manager: {e}")
    return lines
