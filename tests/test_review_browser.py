"""The review page in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium): approve, edit a crop, reject with a tag, mark a missed anomaly, undo; then the files
on disk (by hash), the session lines against the schema, and the journal.

`./scripts/bootstrap --dev` installs chromium and chromium-driver with apt where it can; where
they are missing this test skips and says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import db_rows, session_lines, wait_for
from tests.review_support import ReviewProc, make_root, members, sha_of

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def browser():  # type: ignore[no-untyped-def]
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs chromium and chromedriver (./scripts/bootstrap --dev installs them with apt on Linux)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (requirements-dev.lock)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(a)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)


def test_review_in_a_real_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = browser()
    root = make_root(tmp_path / "root", sets=3)
    try:
        with ReviewProc(root) as rp:
            driver.get(rp.url)
            body = driver.find_element(By.TAG_NAME, "body")
            status = lambda: driver.find_element(By.ID, "status").text  # noqa: E731
            wait_for(lambda: "ready" in status(), timeout=30, what="page ready")
            order = [li for li in driver.execute_script("return fetch('api/queue').then(r => r.json())")["sets"]]
            a, b, c = [s["set_id"] for s in order]
            ma, mb, mc = members(root, a), members(root, b), members(root, c)
            pos = lambda: driver.find_element(By.ID, "folder").text  # noqa: E731

            # Set A: pick member 2 with the key, approve with the button.
            assert pos() == f"set_{a}"
            body.send_keys("2")
            driver.find_element(By.ID, "btn-approve").click()
            wait_for(lambda: pos() == f"set_{b}", timeout=20, what="next set after approve")

            # Set B: E, drag the crop's corner to shrink it, then C saves it.
            body.send_keys("e")
            handle = driver.find_element(By.ID, "crop-handle")
            ActionChains(driver).click_and_hold(handle).move_by_offset(-60, -60).release().perform()
            shown = driver.find_element(By.ID, "crop-box").get_attribute("data-box")
            x, y, w, h = (int(v) for v in shown.split(","))
            assert (w, h) != (256, 384) and w * 3 == h * 2  # smaller, still exactly 2:3
            body.send_keys("c")
            wait_for(lambda: pos() == f"set_{c}", timeout=20, what="next set after crop")

            # Set C: mark a missed anomaly on member 1 (M, drag), then X: reject member 3 with a tag.
            driver.find_element(By.ID, "btn-draw").click()
            stage = driver.find_elements(By.CSS_SELECTOR, ".card .ov")[0]
            ActionChains(driver).move_to_element_with_offset(stage, -40, -40).click_and_hold().move_by_offset(
                50, 40
            ).release().perform()
            wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".drawn"), timeout=10, what="drawn box")
            body.send_keys("x")
            driver.find_element(By.CSS_SELECTOR, "#reject-rows button[data-index='2'][data-tag='long_hand']").click()
            driver.find_element(By.ID, "reject-submit").click()
            wait_for(lambda: "reject" in status(), timeout=20, what="reject done")
            lines = wait_for(lambda: len(session_lines(root)) == 3 and session_lines(root), timeout=20, what="3 lines")

            # U: the reject goes back.
            driver.find_element(By.ID, "btn-undo").click()
            wait_for(lambda: "undone" in status(), timeout=20, what="undo")
            wait_for(lambda: len(session_lines(root)) == 4, timeout=20, what="the undo's line")
    finally:
        driver.quit()

    la, lb, lc, lu = session_lines(root)
    assert la["set_id"] == f"set_{a}" and la["winner"] == ma[1][2] and la["bestshot"]["source"] == "review"
    assert sha_of(root / "exports" / "approved" / ma[1][2]) == ma[1][0]
    assert lb["winner"] == mb[0][2] and lb["crop_box"] == {"x": x, "y": y, "w": w, "h": h}
    assert sha_of(root / "exports" / "to_crop" / mb[0][2]) == mb[0][0]
    with (
        Image.open(root / "exports" / "cropped" / mb[0][2]) as im,
        Image.open(root / "exports" / "to_crop" / mb[0][2]) as s,
    ):
        assert im.size == (w, h) and im.tobytes() == s.crop((x, y, x + w, y + h)).tobytes()
    assert lc["delete"] is True and lc["bestshot"]["deleted"] == [mc[2][2]]
    assert lc["bestshot"]["image_tags"] == {mc[2][2]: ["long_hand"]}
    (drawn,) = lc["bestshot"]["region_labels"]
    assert drawn["image"] == mc[0][2] and drawn["origin"] == "drawn" and drawn["label"] == "anomaly"
    assert drawn["tag"] == "extra_fingers" and drawn["box"]["w"] > 10
    assert (
        lu["set_id"] == f"set_{c}"
        and lu["bestshot"]["retracted"] is True
        and lu["bestshot"]["region_labels"] == [drawn]
    )
    assert sha_of(root / mc[2][1]) == mc[2][0]  # back in its set folder, same bytes
    assert not (root / "exports" / "rejected" / "long_hand" / mc[2][2]).exists()
    journal = db_rows(root, "select batch_id, state from journal where batch_id like '%review-%' order by id")
    assert [s for _b, s in journal] == ["done", "done", "undone", "done"]
    assert lines[2]["set_id"] == f"set_{c}"
