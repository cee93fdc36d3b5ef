"""`bestshot review`: the review page on 127.0.0.1, for this root, until Ctrl-C."""

from __future__ import annotations

import argparse
import webbrowser

from core.errors import BestshotError
from daemon import logsetup
from daemon.cli import add_common, config_from_args


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser(
        "review",
        help="open the review page: decide sets with one key, edit crops at the exact aspect, mark anomalies",
    )
    add_common(p)
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: config review.port; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from daemon.app import build_ctx
    from daemon.instance import InstanceLock
    from daemon.pipeline import Pipeline
    from daemon.review.catchup import CatchUp
    from daemon.review.server import LockedWriter, ReviewServer, make_app
    from daemon.review.service import ReviewService

    cfg = config_from_args(args)
    logsetup.configure(cfg, to_file=False, verbose=args.verbose)
    lock = InstanceLock(cfg.root, command="review", mode=cfg.mode)
    try:
        lock.acquire()
    except BestshotError as e:
        url_file = cfg.root / "logs" / "review.url"
        hint = (
            f"the running daemon serves the page: its URL is in {url_file}"
            if url_file.is_file()
            else "set `review: {enabled: true}` in the daemon's config to have it serve the page, or stop it"
        )
        raise BestshotError(e.path, f"{e.reason}; {hint}") from e
    try:
        ctx = build_ctx(cfg, with_extractors=False)
        pipeline = Pipeline(ctx)
        pipeline.recover()  # the same crash recovery as the daemon's start-up
        catch_up = CatchUp(pipeline)
        catch_up(force=True)
        server = ReviewServer(cfg.root, cfg.review.port if args.port is None else args.port)
        app = make_app(
            ReviewService(ctx, pipeline.tracker), LockedWriter(), server.token, lambda: server.port, refresh=catch_up
        )
        print(f"review: {server.url}", flush=True)
        if args.open:
            webbrowser.open(server.url)
        server.serve(app)
        return 0
    finally:
        lock.release()
