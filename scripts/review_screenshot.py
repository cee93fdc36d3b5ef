"""Regenerate docs/review.png: the review page in headless Chromium over synthetic images only
(a flagged region and a crop proposal are stored for one of them so the overlays show).

    .venv/bin/python scripts/review_screenshot.py
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import wait_for  # noqa: E402
from tests.review_support import ReviewProc, add_report, make_root, members  # noqa: E402
from tests.test_review_browser import browser  # noqa: E402


def main() -> None:
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        root = make_root(Path(tmp) / "root", sets=1, size=(512, 768))
        con_set = members(root, _only_set(root))
        sha = con_set[0][0]
        crop = {
            "version": 1,
            "image_size": [512, 768],
            "aspect": "2:3",
            "verdict": "crop",
            "reason": "removes extra_fingers",
            "best": {"box": {"x": 96, "y": 48, "w": 384, "h": 576}},
            "fallbacks": [
                {"box": {"x": 64, "y": 96, "w": 320, "h": 480}},
                {"box": {"x": 0, "y": 0, "w": 448, "h": 672}},
            ],
        }
        add_report(
            root, sha, [{"tag": "extra_fingers", "box": {"x": 30, "y": 330, "w": 90, "h": 90}, "score": 0.82}], crop
        )
        driver = browser()
        try:
            with ReviewProc(root) as rp:
                driver.set_window_size(1280, 760)
                driver.get(rp.url)
                wait_for(lambda: "ready" in driver.find_element(By.ID, "status").text, timeout=30, what="page")
                wait_for(
                    lambda: driver.execute_script(
                        "return Array.from(document.querySelectorAll('.stage img')).every(i => i.complete && i.naturalWidth > 0)"
                    ),
                    timeout=30,
                    what="previews",
                )
                png = driver.get_screenshot_as_png()
        finally:
            driver.quit()
    im = Image.open(io.BytesIO(png)).convert("RGB")
    im.thumbnail((960, 960))
    out = REPO / "docs" / "review.png"
    out.parent.mkdir(exist_ok=True)
    im.quantize(colors=128).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def _only_set(root: Path) -> str:
    import sqlite3

    con = sqlite3.connect(root / "bestshot.sqlite")
    try:
        return str(con.execute("select id from sets").fetchone()[0])
    finally:
        con.close()


if __name__ == "__main__":
    main()
