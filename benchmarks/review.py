"""Review page figures over real HTTP against `bestshot review` on sets of 4 x 1024x1536 PNGs.

- ready: a set's view (JSON) and its 4 previews, once the previews are cached (target < 300 ms);
- cold: the same with the previews made first (downscaled JPEG, cached by sha256);
- action: approve (journaled move + decision + fsynced session line) (target < 100 ms).
Floors measured in the same run: one static-file round trip, and one fsynced line append.

    .venv/bin/python benchmarks/review.py [--sets 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.labels.session import append_line
from tests.helpers import bestshot, textured, write_config, write_png
from tests.review_support import ReviewProc, http


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1e3:7.1f} ms  max {max(samples) * 1e3:7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        write_config(root, {"mode": "recommend"})
        for s in range(args.sets):
            for i in range(4):
                write_png(root / "inbox" / f"s{s}" / f"s{s}_{i}.png", textured(1000 + 10 * s + i, w=1024, h=1536))
        bestshot("scan", root=root, timeout=600)
        with ReviewProc(root) as rp:
            sets = [s["set_id"] for s in http(rp.url + "api/queue")[1]["sets"]]

            def load(set_id: str) -> float:
                t = time.perf_counter()
                status, view = http(rp.url + f"api/set/{set_id}")
                assert status == 200
                for m in view["members"]:
                    st, data = http(rp.url + f"img/{set_id}/{m['index']}/preview")
                    assert st == 200 and len(data) > 1000
                return time.perf_counter() - t

            cold = [load(s) for s in sets]
            warm = [min(load(s) for _ in range(3)) for s in sets]
            static = []
            for _ in range(20):
                t = time.perf_counter()
                http(rp.url.split("/r/")[0] + "/static/review.css")
                static.append(time.perf_counter() - t)
            acts = []
            for s in sets:
                t = time.perf_counter()
                status, res = http(rp.url + f"api/set/{s}/act", {"action": "approve", "winner": 0}, token=rp.token)
                acts.append(time.perf_counter() - t)
                assert status == 200, res
        line_floor = []
        for i in range(20):
            t = time.perf_counter()
            append_line(Path(tmp) / "floor.jsonl", f'{{"x": {i}}}')
            line_floor.append(time.perf_counter() - t)
    n = len(sets)
    print(
        f"review page, {n} sets of 4 x 1024x1536 PNG, real HTTP to `bestshot review` (os.cpu_count()={os.cpu_count()})"
    )
    print(f"  set ready, previews cached : {ms(warm)}   target < 300 ms")
    print(f"  set ready, previews made   : {ms(cold)}")
    print(
        f"  floor: static file GET     : {ms(static)}   ready/floor = {statistics.median(warm) / statistics.median(static):.1f}x"
    )
    print(f"  action (approve)           : {ms(acts)}   target < 100 ms")
    print(
        f"  floor: fsynced line append : {ms(line_floor)}   action/floor = {statistics.median(acts) / statistics.median(line_floor):.1f}x"
    )


if __name__ == "__main__":
    main()
