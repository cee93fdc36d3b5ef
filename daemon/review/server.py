"""The review page's HTTP side: a Starlette app served by uvicorn on 127.0.0.1 only.

Security, in the order a request meets it:
- the Host header must name this server (127.0.0.1 or localhost with its port): a DNS-rebinding
  page on another name gets 421 before anything runs;
- every URL lives under /r/<token>/, a random per-run token (another local user, or a web page
  in the browser that cannot read this one, does not know it): a wrong one is a plain 404;
- a state-changing request is a POST with JSON, carrying the token again in X-Bestshot-Token (a
  custom header: cross-site forms cannot send it) and, when the browser sends Origin, this origin;
- requests carry set ids and member indices only; files are served from database paths, and only
  regular files inside the root.
Every refusal is a 4xx with a JSON reason, and nothing on disk has changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from core.errors import BestshotError
from daemon.review.previews import ensure_preview
from daemon.review.service import NotFoundError, ReviewError, ReviewService

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
MAX_BODY = 64 * 1024
T = TypeVar("T")


class Writer(Protocol):
    """Runs a state-changing step on the root's one writer and returns its result."""

    def __call__(self, fn: Callable[[], T]) -> T: ...


class LockedWriter:
    """`bestshot review` on its own: it holds the root's instance lock, so it is the only writer;
    this lock makes its request threads take turns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, fn: Callable[[], T]) -> T:
        with self._lock:
            return fn()


@dataclass(frozen=True)
class ReviewCall:
    """A page action handed to the daemon's worker thread, which runs it between two events."""

    fn: Callable[[], Any]
    future: concurrent.futures.Future[Any]

    def run(self) -> None:
        if self.future.set_running_or_notify_cancel():
            try:
                self.future.set_result(self.fn())
            except BaseException as e:
                self.future.set_exception(e)


class QueueWriter:
    """Inside the daemon: page actions run on its worker, so the daemon stays the one writer."""

    def __init__(self, put: Callable[[ReviewCall], None], timeout: float = 120.0) -> None:
        self.put = put
        self.timeout = timeout

    def __call__(self, fn: Callable[[], T]) -> T:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.put(ReviewCall(fn, fut))
        return fut.result(timeout=self.timeout)


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers={"Cache-Control": "no-store"})


class HostCheck:
    """Refuses a request whose Host is not this server (DNS rebinding), before routing."""

    def __init__(self, app: ASGIApp, port: Callable[[], int]) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            allowed = {f"127.0.0.1:{self.port()}", f"localhost:{self.port()}"}
            if host not in allowed:
                await _error(421, "wrong Host header: open the page at the URL bestshot printed")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def make_app(
    service: ReviewService,
    writer: Writer,
    token: str,
    port: Callable[[], int],
    *,
    refresh: Callable[[], object] | None = None,
) -> ASGIApp:
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    def authorised(request: Request) -> bool:
        return secrets.compare_digest(str(request.path_params.get("token", "")), token)

    def guard(handler: Callable[[Request], Any], *, post: bool = False) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not authorised(request):
                return _error(404, "not found")
            if post:
                problem = _post_problem(request, token, port())
                if problem:
                    return _error(*problem)
                raw = await request.body()
                if len(raw) > MAX_BODY:
                    return _error(413, "request too large")
                try:
                    request.state.json = json.loads(raw or b"{}")
                except ValueError:
                    return _error(400, "body is not JSON")
                if not isinstance(request.state.json, dict):
                    return _error(400, "body must be a JSON object")
            try:
                from starlette.concurrency import run_in_threadpool

                result = await run_in_threadpool(handler, request)
            except ReviewError as e:
                return _error(e.status, e.reason)
            except BestshotError as e:
                return _error(409, e.reason)
            except concurrent.futures.TimeoutError:
                return _error(503, "the daemon is busy; try again")
            except Exception as e:  # a defect: say so on the page, keep the trace in the log
                log.exception("review request %s failed", request.url.path.replace(token, "<token>"))
                return _error(500, f"internal error: {type(e).__name__}: {e}")
            if isinstance(result, Response):
                return result
            return JSONResponse(result, headers={"Cache-Control": "no-store"})

        return endpoint

    def page(request: Request) -> Response:
        resp = templates.TemplateResponse(
            request, "review.html", {"token": token, "tags": list(service.ctx.cfg.review.tags)}
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def queue(_request: Request) -> dict[str, Any]:
        if refresh is not None:
            writer(refresh)
        return {"sets": service.queue()}

    def set_view(request: Request) -> dict[str, Any]:
        return service.view(request.path_params["set_id"])

    def act(request: Request) -> dict[str, Any]:
        set_id = request.path_params["set_id"]
        body = request.state.json
        return writer(lambda: service.act(set_id, body))

    def undo(_request: Request) -> dict[str, Any]:
        return writer(service.undo)

    def image(request: Request) -> Response:
        idx = _index(request.path_params["idx"])
        m = service.member(request.path_params["set_id"], idx)
        path = service.file_of(m)
        if request.path_params["kind"] == "full":
            return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})
        if request.path_params["kind"] != "preview":
            raise NotFoundError(None, "not found")
        return FileResponse(
            ensure_preview(service.ctx.cfg, m.sha256, path),
            media_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=86400"},
        )

    routes = [
        Route("/r/{token}/", guard(page)),
        Route("/r/{token}/api/queue", guard(queue)),
        Route("/r/{token}/api/set/{set_id}", guard(set_view)),
        Route("/r/{token}/api/set/{set_id}/act", guard(act, post=True), methods=["POST"]),
        Route("/r/{token}/api/undo", guard(undo, post=True), methods=["POST"]),
        Route("/r/{token}/img/{set_id}/{idx}/{kind}", guard(image)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def not_found(_request: Request, _exc: Exception) -> Response:
        return _error(404, "not found")

    async def not_allowed(_request: Request, _exc: Exception) -> Response:
        return _error(405, "method not allowed")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    return _Headers(HostCheck(app, port))


def _index(s: str) -> int:
    if not s.isdigit() or len(s) > 2:
        raise NotFoundError(None, "no such member")
    return int(s)


def _post_problem(request: Request, token: str, port: int) -> tuple[int, str] | None:
    if not secrets.compare_digest(request.headers.get("x-bestshot-token", ""), token):
        return 403, "missing or wrong X-Bestshot-Token header"
    origin = request.headers.get("origin")
    if origin is not None and origin not in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        return 403, f"origin {origin!r} may not change anything here"
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return 415, "Content-Type must be application/json"
    return None


class _Headers:
    """No framing, no referrer (the token is in the URL), only our own scripts and styles."""

    HEADERS = (
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)  # type: ignore[arg-type]


class _WakeOnExitServer(uvicorn.Server):
    """uvicorn's own main loop wakes ten times a second to look at `should_exit` (and to refresh
    the Date header); inside the daemon that is a polling loop on an idle machine. This one
    sleeps until it is told to stop: from another thread (`request_exit`) or by a signal."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        # Both are set before should_exit is first read: a request_exit that comes earlier is seen
        # by that read, one that comes later finds the loop to wake.
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        while not await self.on_tick(0):
            await self._wake.wait()
            self._wake.clear()

    def request_exit(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A graceful stop is the whole answer to SIGINT/SIGTERM. uvicorn's own handler also raises
        # the signal again after shutdown, which killed `bestshot review` before serve() could
        # remove the URL file (a dead token left in logs/review.url).
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: do not wait for open connections
        self.request_exit()


class ReviewServer:
    """uvicorn on a socket bound to 127.0.0.1 (port 0: any free one), with a new token per run."""

    def __init__(self, root: Path, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(("127.0.0.1", port))
            self.sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
        except OSError as e:
            self.sock.close()
            raise BestshotError(None, f"cannot listen on 127.0.0.1:{port} ({e.strerror}); pick another --port") from e
        self.port: int = self.sock.getsockname()[1]
        self.token = secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{self.port}/r/{self.token}/"
        self.url_file = root / "logs" / "review.url"
        self._server: _WakeOnExitServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, app: ASGIApp) -> None:
        """Serve until stopped (SIGINT/SIGTERM when on the main thread)."""
        # No Date header: it is refreshed only by uvicorn's ten-a-second loop, which this server does without.
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, date_header=False)
        self._server = _WakeOnExitServer(config)
        self._write_url_file()
        try:
            self._server.run(sockets=[self.sock])
        finally:
            self._remove_url_file()

    def start_thread(self, app: ASGIApp) -> None:
        self._thread = threading.Thread(target=self.serve, args=(app,), name="review-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.request_exit()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sock.close()

    def _write_url_file(self) -> None:
        # Readable by this user only: the token in it is the key to the page.
        self.url_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.url + "\n")

    def _remove_url_file(self) -> None:
        try:
            if self.url_file.read_text(encoding="utf-8").strip() == self.url:
                self.url_file.unlink()
        except OSError:
            pass
