"""The review server inside the daemon sleeps while nobody uses it, and still stops at once.

uvicorn's stock main loop wakes ten times a second; an idle daemon must not (see daemon/runner.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from daemon.review.server import ReviewServer
from tests.helpers import REPO, wait_for


def _app() -> Starlette:
    async def hello(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/", hello)])


def test_idle_server_does_not_wake_and_stops_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks: list[int] = []
    on_tick = uvicorn.Server.on_tick

    async def counting(self: uvicorn.Server, counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(self, counter)

    monkeypatch.setattr(uvicorn.Server, "on_tick", counting)  # uvicorn's, not ours: only counted
    server = ReviewServer(tmp_path, 0)
    server.start_thread(_app())
    try:
        wait_for(server.url_file.exists, timeout=20, what="the review server to start")
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=10) as r:
            assert r.read() == b"hello"
        # An idle stretch of three of uvicorn's 0.1 s ticks: the stock loop would tick in it.
        threading.Event().wait(0.3)
        assert len(ticks) == 1, f"the server woke {len(ticks)} times while idle"
    finally:
        server.stop()
    assert server._thread is not None and not server._thread.is_alive(), "stop() did not end the server"
    assert not server.url_file.exists()


SERVE = """
import sys
from pathlib import Path
from starlette.applications import Starlette
from daemon.review.server import ReviewServer
ReviewServer(Path(sys.argv[1]), 0).serve(Starlette())
"""


def test_signal_stops_a_server_on_the_main_thread(tmp_path: Path) -> None:
    """`bestshot review` serves on the main thread: SIGTERM must wake the sleeping loop, and the
    server ends normally, removing the URL file with its now dead token."""
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path)], cwd=REPO)
    try:
        wait_for(lambda: (tmp_path / "logs" / "review.url").exists(), timeout=30, what="the review server to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "logs" / "review.url").exists()
