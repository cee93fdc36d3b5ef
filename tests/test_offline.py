"""Offline means offline: `scan` and `run` make no network connection and no name lookup (issue 14,
item 9). Only `bestshot models fetch` may use the network.

Two guards watch the real commands with every extractor the config enables by default:
- a Python audit hook (sys.addaudithook) that records and refuses any socket connect, sendto or
  name lookup made through Python;
- strace, where it can trace, for what native code does (ONNX Runtime's telemetry, MediaPipe...):
  any connect/sendto to an internet address, and any read of the resolver's files (a name lookup
  starts there even when no nameserver answers).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, filed_sets, status, textured, wait_for, write_png

pytestmark = pytest.mark.slow

GUARD = r"""
import os, socket, sys, traceback
LOG = os.environ["OFFLINE_GUARD_LOG"]
NET = {"socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
       "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo"}
def hook(event, args):
    if event not in NET:
        return
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg") and args[0].family == socket.AF_UNIX:
        return  # local IPC, not the network
    with open(LOG, "a") as f:
        f.write(f"{event} {args[1:]!r}\n" + "".join(traceback.format_stack(limit=12)) + "\n")
    raise RuntimeError(f"bestshot is offline: refused {event} {args[1:]!r}")
sys.addaudithook(hook)
sys.argv = ["bestshot", *sys.argv[1:]]
from daemon.cli import main
sys.exit(main())
"""
RESOLVER_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/gai.conf", "/etc/host.conf")


def _strace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    res = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"], capture_output=True)
    return res.returncode == 0


class Guarded:
    """A bestshot command under both guards; `violations()` lists what either saw."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.guard = tmp / "offline_guard.py"
        self.guard.write_text(GUARD)
        self.net_log = tmp / "net.log"
        self.trace = tmp / "strace.txt"
        self.strace = _strace_works()

    def cmd(self, *args: str) -> list[str]:
        base = [sys.executable, str(self.guard), *args]
        if not self.strace:
            return base
        calls = "trace=connect,sendto,sendmsg,open,openat"
        return ["strace", "-f", "-qq", "--seccomp-bpf", "-e", calls, "-e", "signal=none", "-o", str(self.trace), *base]

    def env(self) -> dict[str, str]:
        # PYTHONPATH: the guard script lives in tmp, so without it `daemon` would come from wherever
        # the package is installed instead of this tree.
        return dict(os.environ, OFFLINE_GUARD_LOG=str(self.net_log), PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))

    def target_pid(self, proc: subprocess.Popen[bytes]) -> int:
        """The bestshot process itself: under strace, strace's child (a signal to strace would
        only detach it)."""
        if not self.strace:
            return proc.pid
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        return int(pids[0]) if pids else proc.pid

    def violations(self) -> list[str]:
        out = self.net_log.read_text().split("\n\n") if self.net_log.exists() else []
        if self.trace.exists():
            for line in self.trace.read_text(errors="replace").splitlines():
                inet = ("connect(" in line or "sendto(" in line or "sendmsg(" in line) and "AF_INET" in line
                resolver = "open" in line and any(f'"{f}"' in line for f in RESOLVER_FILES) and "ENOENT" not in line
                if inet or resolver:
                    out.append("strace: " + line)
        return [v for v in out if v.strip()]


def drop_set(root: Path, tmp: Path, name: str, seed: int) -> None:
    for i in range(2):
        write_png(tmp / "stage" / name / f"{name}_{i}.png", textured(seed + i, w=192, h=256))
    shutil.move(str(tmp / "stage" / name), root / "inbox" / name)


def test_scan_uses_no_network(tmp_path: Path) -> None:
    """Item 9: `scan` (every default extractor, U2-Netp's ONNX Runtime session included) connects
    nowhere and looks up no name."""
    root = tmp_path / "root"
    drop_set(root, tmp_path, "s", 1)
    g = Guarded(tmp_path)
    res = subprocess.run(
        [*g.cmd("scan", "--root", str(root))], cwd=REPO, env=g.env(), capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert len(filed_sets(root)) == 1
    info = status(root)
    assert info["extractors"]["saliency"]["available"], info["extractors"]["saliency"]  # its session really ran
    assert g.violations() == []


def test_a_short_run_uses_no_network(tmp_path: Path) -> None:
    """Item 9: the running daemon (ingest, extraction, ranking, then idle) connects nowhere and
    looks up no name."""
    root = tmp_path / "root"
    root.mkdir()
    g = Guarded(tmp_path)
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen(
        g.cmd("run", "--root", str(root)), cwd=REPO, env=g.env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        out = tmp_path / "daemon.log"
        wait_for(lambda: b"daemon running" in out.read_bytes() or proc.poll() is not None, timeout=180, what="start")
        assert proc.poll() is None, out.read_text()[-3000:]
        drop_set(root, tmp_path, "r", 11)
        wait_for(lambda: filed_sets(root), timeout=120, what="the set filed")
        wait_for(lambda: status(root)["pending_jobs"] == 0, timeout=300, what="extraction finished")
        idle_from = time.time()
        wait_for(lambda: time.time() > idle_from + 5, what="a few idle seconds")  # idle, as the user leaves it
    finally:
        if proc.poll() is None:
            os.kill(g.target_pid(proc), signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    assert proc.returncode == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    assert g.violations() == []
