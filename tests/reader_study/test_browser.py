"""A reader in a real browser (Chromium through chromedriver) against the live server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kecae.reader_study.prepare import prepare_study

#: Flags this machine's closed network needs: no sandbox (root), no GPU, and no background
#: traffic (QUIC, component updates, sync) that would wait for a network that is not there.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
]


def _missing(what: str) -> None:
    msg = (
        f"{what}: install Debian's `chromium` and `chromium-driver` (`make test` does) and "
        "`pip install -e .[test]` for selenium"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def browser(tmp_path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        _missing(
            f"Chromium ({chromium or 'not found'}) and chromedriver "
            f"({driver or 'not found'}) are needed"
        )
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look online
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        opts.add_argument(flag)
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver))
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def _shot(drv, name: str) -> None:
    folder = os.environ.get("KECAE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(Path(folder) / f"{name}.png"))


def test_reader_in_a_real_browser(browser, tmp_path, kit):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    gen = kit.make_generated(tmp_path, pairs=4)
    study = tmp_path / "study"
    prepare_study(gen, study, pairs=2, readers=["alice", "bob"], controls=2, seed=0)
    link = kit.links(study)["alice"]
    order = kit.schedule(study, "alice")
    wait = WebDriverWait(browser, 15)

    def heading() -> str:
        return browser.find_element(By.ID, "where").text

    def wait_for(text: str) -> None:  # robust while the page is being replaced
        wait.until(
            lambda d: (
                text in d.execute_script("return document.body ? document.body.innerText : '';")
            )
        )

    def image_loaded(element_id: str = "image") -> bool:
        return browser.execute_script(
            "const i = document.getElementById(arguments[0]);"
            "return i.complete && i.naturalWidth > 0;",
            element_id,
        )

    def keys(*k: str) -> None:
        ActionChains(browser).send_keys(*k).perform()

    def click_choice(name: str, value: str) -> None:  # the visible button of a radio choice
        browser.find_element(
            By.CSS_SELECTOR, f'input[name="{name}"][value="{value}"] + span'
        ).click()

    with kit.Server(study) as server:
        # -- the reader opens their personal link
        browser.get(server.url + link)
        wait_for("image 1 of 6")
        assert heading() == "Phase 1 of 2 · image 1 of 6"
        assert "0 of 12 answers saved" in browser.find_element(By.ID, "progress-text").text
        wait.until(lambda d: image_loaded())
        save = browser.find_element(By.ID, "save")
        assert not save.is_enabled()  # nothing chosen yet
        _shot(browser, "phase1")

        # -- image 1 with the mouse: KL-2, realism 4, save
        click_choice("kl", "2")
        assert not save.is_enabled()  # realism still missing
        click_choice("realism", "4")
        assert save.is_enabled()
        save.click()
        wait_for("image 2 of 6")

        # -- image 2 with the keyboard: a change of mind before saving is fine
        keys(Keys.ARROW_RIGHT, "2", Keys.ARROW_LEFT, "3")
        assert browser.find_element(By.CSS_SELECTOR, 'input[name="kl"][value="0"]').is_selected()
        keys(Keys.ENTER)
        wait_for("image 3 of 6")
        assert "2 of 12 answers saved" in browser.find_element(By.ID, "progress-text").text

        # -- reload: the same image, nothing sent twice
        browser.refresh()
        wait_for("image 3 of 6")
        keys(Keys.ENTER)  # nothing chosen: Enter does nothing
        # -- stop and come back by the link, continue with the keyboard
        browser.get("about:blank")
        browser.get(server.url + link)
        wait_for("image 3 of 6")
        keys(Keys.ARROW_RIGHT, "5", Keys.ENTER)
        wait_for("image 4 of 6")

        saved = kit.answers(study)
        assert [
            (r["name"], r["position"], r["item_id"], r["kl_call"], r["realism"], r["match"])
            for r in saved
        ] == [
            ("alice", 0, order[0]["id"], 2, 4, None),
            ("alice", 1, order[1]["id"], 0, 3, None),
            ("alice", 2, order[2]["id"], 2, 5, None),
        ]
        assert all(r["elapsed_ms"] is not None and r["elapsed_ms"] >= 0 for r in saved)

        # -- phase 2 after phase 1: the original beside the exchanged image
        kit.answer_phase1(server, link, 3)
        browser.refresh()
        wait_for("comparison 1 of 6")
        assert "Phase 1 is complete" in browser.find_element(By.ID, "phase2-intro").text
        assert browser.find_element(By.ID, "exchange").text in ("KL-0 → KL-2", "KL-2 → KL-0")
        wait.until(lambda d: image_loaded("original") and image_loaded("image"))
        _shot(browser, "phase2")
        keys("y", Keys.ENTER)
        wait_for("comparison 2 of 6")
        assert kit.answers(study)[-1]["match"] == 1 and kit.answers(study)[-1]["position"] == 6
        for k in range(2, 7):
            wait_for(f"comparison {k} of 6")
            keys("n", Keys.ENTER)
        wait.until(lambda d: d.find_elements(By.ID, "done"))
        assert "All 12 answers are saved" in browser.find_element(By.ID, "done").text
        _shot(browser, "done")
        assert [r["match"] for r in kit.answers(study) if r["position"] >= 6] == [1, 0, 0, 0, 0, 0]

        # -- a link that is not a reader's
        browser.get(server.url + "/r/" + "x" * 32)
        wait.until(lambda d: d.find_elements(By.ID, "error"))
        assert "404" in browser.find_element(By.ID, "error").text
        _shot(browser, "error")
    assert not [r for r in kit.answers(study) if r["name"] == "bob"]
