"""LaunchAgent (macOS) and systemd user unit (Linux) generation and installation."""

from __future__ import annotations

import os
import plistlib
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BestshotError

LABEL = "com.bestshot.agent"
MODULE = "daemon.cli"  # what ProgramArguments run; a unit naming another module predates a rename
SERVICE_FLAG = "--service"  # `run --service`: log to the rotated file only, not to launchd's stderr file
# Folders macOS's privacy protection (TCC) keeps from a launchd job without Full Disk Access,
# relative to the home folder; /Volumes (external and network volumes) is absolute.
PROTECTED_DIRS = ("Documents", "Desktop", "Downloads", "Library/Mobile Documents", "Library/CloudStorage")
PROTECTED_ABSOLUTE = ("/Volumes",)
# launchd tears a job down asynchronously after `bootout` (SIGTERM, then up to ExitTimeOut = 20 s);
# a `bootstrap` before it is gone fails with "Bootstrap failed: 5: Input/output error".
BOOTOUT_WAIT_S = 30.0
BOOTSTRAP_TRIES = 5
POLL_S = 0.2


class ServiceError(BestshotError):
    kind = "service"

    def __init__(self, path: Path | str | None, reason: str) -> None:
        super().__init__(path, reason)
        self.steps: list[str] = []  # what was done before it failed, for the user to see


@dataclass(frozen=True)
class ServiceSpec:
    python: Path  # the venv's interpreter, absolute: launchd has no PATH or shell
    root: Path
    config: Path | None
    log_dir: Path
    home: Path

    def program_arguments(self) -> list[str]:
        args = [str(self.python), "-m", MODULE, "run", "--root", str(self.root)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        return [*args, SERVICE_FLAG]


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


def code_places() -> dict[str, Path]:
    """Where launchd must read bestshot itself from: the source tree and the virtual environment."""
    return {"the code": Path(__file__).resolve().parent.parent, "the virtual environment": Path(sys.prefix)}


def real_python() -> Path:
    """The interpreter binary macOS checks Full Disk Access against: the venv's `python` is a
    symlink, and a grant to the symlink does nothing."""
    return Path(sys.executable).resolve()


def _protected_by(path: Path, home: Path) -> str | None:
    """The protected folder `path` is in, compared as macOS's case-insensitive volumes compare."""
    parts = [p.casefold() for p in path.parts]
    for d in PROTECTED_DIRS:
        prot = [p.casefold() for p in (home / d).parts]
        if parts[: len(prot)] == prot:
            return f"~/{d}"
    for a in PROTECTED_ABSOLUTE:
        prot = [p.casefold() for p in Path(a).parts]
        if parts[: len(prot)] == prot and len(parts) > len(prot):
            return a
    return None


def fda_findings(places: Mapping[str, Path], home: Path, python: Path | None = None) -> list[str]:
    """One finding per place (`the root`, `the code`, ...) that a launchd job cannot read without
    Full Disk Access; each names the real interpreter to grant it to."""
    python = python or real_python()
    out = []
    for what, path in places.items():
        try:
            resolved = path.expanduser().resolve()
        except OSError:
            resolved = path.expanduser().absolute()
        prot = next((p for p in (_protected_by(resolved, home), _protected_by(path, home)) if p), None)
        if prot is None:
            continue
        out.append(
            f"{what} ({path}) is inside {prot}: a launchd job cannot read it without Full Disk Access. "
            f"Move it (e.g. ~/bestshot), or grant Full Disk Access to {python} (the real Python binary, "
            "not the venv's symlink) in System Settings > Privacy & Security > Full Disk Access."
        )
    return out


def fda_warning(root: Path, home: Path, python: Path | None = None) -> str | None:
    """The root, the code and the venv, checked together; None when launchd can read them all."""
    found = fda_findings({"the root": root, **code_places()}, home, python)
    return " ".join(found) if found else None


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(cmd, 127, "", f"cannot run {cmd[0]}: {e}")


def _said(res: subprocess.CompletedProcess[str]) -> str:
    return f"$ {' '.join(res.args)} -> exit {res.returncode} {(res.stderr or res.stdout).strip()}".rstrip()


def _domain() -> str:
    return f"gui/{os.getuid()}"


def stale_unit(target: Path) -> str | None:
    """Why an installed LaunchAgent no longer runs this bestshot (another module path, a Python
    that is gone), or None."""
    try:
        args = plistlib.loads(target.read_bytes()).get("ProgramArguments", [])
    except (OSError, plistlib.InvalidFileException, ValueError) as e:
        return f"unreadable ({e})"
    if len(args) < 3 or args[1] != "-m" or args[2] != MODULE:
        return f"runs `{' '.join(args[1:3])}`, not `-m {MODULE}`"
    if not Path(args[0]).exists():
        return f"its Python {args[0]} no longer exists"
    return None


def _launchd_load(target: Path, done: list[str]) -> list[str]:
    """bootout, wait until launchd has let go of the job, enable, bootstrap (bounded retries).
    Raises ServiceError with launchctl's reason when the job does not end up loaded."""
    service = f"{_domain()}/{LABEL}"
    out = _run(["launchctl", "bootout", service])
    done.append(_said(out))
    deadline = time.monotonic() + BOOTOUT_WAIT_S
    while _run(["launchctl", "print", service]).returncode == 0:
        if time.monotonic() > deadline:
            raise ServiceError(
                target,
                f"the previous job is still loaded {BOOTOUT_WAIT_S:.0f} s after `launchctl bootout {service}`; "
                f"stop it (launchctl kill SIGKILL {service}) and run `bestshot service install` again",
            )
        time.sleep(POLL_S)
    # A job once disabled (`launchctl disable`, or an uninstall by hand) refuses to bootstrap.
    res = _run(["launchctl", "enable", service])
    done.append(_said(res))
    if res.returncode != 0:
        raise ServiceError(target, f"`launchctl enable {service}` failed: {(res.stderr or res.stdout).strip()}")
    for attempt in range(1, BOOTSTRAP_TRIES + 1):
        last = _run(["launchctl", "bootstrap", _domain(), str(target)])
        done.append(_said(last))
        if last.returncode == 0 or attempt == BOOTSTRAP_TRIES:
            break
        time.sleep(POLL_S * 2**attempt)  # 0.4, 0.8, 1.6, 3.2 s
    if last.returncode != 0:
        raise ServiceError(
            target,
            f"`launchctl bootstrap` failed {BOOTSTRAP_TRIES} times: {(last.stderr or last.stdout).strip()}. "
            f"Check the plist with `plutil -lint {target}` and launchd's reason with "
            "`log show --last 5m --predicate 'process == \"launchd\"'`",
        )
    if _run(["launchctl", "print", service]).returncode != 0:
        raise ServiceError(target, f"`launchctl bootstrap` succeeded but launchd does not list {service}")
    return [f"loaded {service}"]


def install(spec: ServiceSpec, *, load: bool = True, platform: str = sys.platform) -> list[str]:
    done: list[str] = []
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    if platform == "darwin":
        target = plist_path(spec.home)
        target.parent.mkdir(parents=True, exist_ok=True)
        why_stale = stale_unit(target) if target.exists() else None
        target.write_bytes(launchd_plist_bytes(spec))
        done.append(f"migrated {target} (it {why_stale})" if why_stale else f"wrote {target}")
        if warn := fda_warning(spec.root, spec.home):
            done.append("WARNING: " + warn)
        if load:
            try:
                done += _launchd_load(target, done)
            except ServiceError as e:
                e.steps = done
                raise
    else:
        target = unit_path(spec.home)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(systemd_unit(spec), encoding="utf-8")
        done.append(f"wrote {target}")
        if load:
            for cmd in (
                ["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", "--now", "bestshot.service"],
            ):
                res = _run(cmd)
                done.append(_said(res))
                if res.returncode != 0:
                    err = ServiceError(target, f"`{' '.join(cmd)}` failed: {(res.stderr or res.stdout).strip()}")
                    err.steps = done
                    raise err
    return done


def uninstall(home: Path, *, load: bool = True, platform: str = sys.platform) -> list[str]:
    done: list[str] = []
    if platform == "darwin":
        target = plist_path(home)
        if load and target.exists():
            done.append(_said(_run(["launchctl", "bootout", f"{_domain()}/{LABEL}"])))
    else:
        target = unit_path(home)
        if load and target.exists():
            done.append(_said(_run(["systemctl", "--user", "disable", "--now", "bestshot.service"])))
    if target.exists():
        target.unlink()
        done.append(f"removed {target}")
    else:
        done.append(f"nothing installed at {target}")
    return done


def _log_paths(target: Path, platform: str) -> list[str]:
    if platform != "darwin":
        return []
    try:
        pl = plistlib.loads(target.read_bytes())
    except (OSError, plistlib.InvalidFileException, ValueError):
        return []
    out = []
    root = pl.get("WorkingDirectory")
    if root:
        out.append(f"log:        {Path(root) / 'logs' / 'bestshot.log'} (the daemon's own, rotated)")
    for key, what in (("StandardErrorPath", "launchd stderr"), ("StandardOutPath", "launchd stdout")):
        if pl.get(key):
            out.append(f"{what + ':':<11} {pl[key]}")
    return out


def _launchctl_fields(text: str) -> dict[str, str]:
    """state, pid and last exit code from `launchctl print` (its format is not an API: best effort)."""
    out = {}
    for key in ("state", "pid", "last exit code"):
        m = re.search(rf"^\s*{key} = (.+)$", text, re.MULTILINE)
        if m:
            out[key] = m.group(1).strip()
    return out


def service_status(home: Path, platform: str = sys.platform) -> list[str]:
    target = plist_path(home) if platform == "darwin" else unit_path(home)
    if not target.exists():
        return [f"not installed: {target}", "install it: bestshot service install --root <your library>"]
    lines = [f"installed:  {target}"]
    if platform == "darwin":
        if why := stale_unit(target):
            lines.append(f"OUTDATED:   it {why}; run `bestshot service install` to migrate it")
        res = _run(["launchctl", "print", f"{_domain()}/{LABEL}"])
        if res.returncode != 0:
            lines.append(f"state:      not loaded ({(res.stderr or res.stdout).strip() or f'exit {res.returncode}'})")
        else:
            f = _launchctl_fields(res.stdout)
            lines.append(f"state:      {f.get('state', 'unknown')}")
            lines.append(f"pid:        {f.get('pid', '-')}")
            lines.append(f"last exit:  {f.get('last exit code', '-')}")
    else:
        res = _run(
            ["systemctl", "--user", "show", "bestshot.service", "-p", "ActiveState,SubState,MainPID,ExecMainStatus"]
        )
        if res.returncode != 0:
            lines.append(f"state:      unknown ({(res.stderr or res.stdout).strip()})")
        else:
            f = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
            lines.append(f"state:      {f.get('ActiveState', '?')} ({f.get('SubState', '?')})")
            lines.append(f"pid:        {f.get('MainPID', '-')}")
            lines.append(f"last exit:  {f.get('ExecMainStatus', '-')}")
            lines.append("log:        journalctl --user -u bestshot.service, and <root>/logs/bestshot.log")
    return lines + _log_paths(target, platform)
