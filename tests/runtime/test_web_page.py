"""The page at ``GET /``, in a real headless browser: Debian's chromium and chromium-driver
(scripts/test.sh installs them as root), driven by selenium. Skips when either is missing.

It types text, enters the API key, picks a format, clicks Speak and checks that the audio element
got a playable blob of real size (the browser decoded its duration); with "word timings" it checks
the words shown. ``TAILOR_SCREENSHOT=path.png`` also saves a screenshot (the README's).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.runtime.conftest import API_KEY, LiveServer

pytestmark = pytest.mark.slow
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=900,1000")


def _executable(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (test extra)")
    chromium = _executable("chromium", "chromium-browser")
    driver_path = _executable("chromedriver", "chromium-driver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium and chromium-driver are not installed (scripts/test.sh installs them as root)")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for a browser online
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: Any, script: str, timeout_s: float = 90.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda d: d.execute_script(script))


def test_the_page_speaks_with_the_api_key(browser: Any, live_server: LiveServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = httpx.get(f"{live_server.base_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere, no CDN

    browser.get(f"{live_server.base_url}/")
    assert browser.title == "Tailor speech"
    wait_until(browser, "return document.getElementById('status').className === 'error'")
    assert "API key" in browser.find_element(By.ID, "status").text  # the server wants the key

    key = browser.find_element(By.ID, "key")
    key.send_keys(API_KEY)
    browser.execute_script("document.getElementById('key').dispatchEvent(new Event('change'))")
    wait_until(browser, "return [...document.getElementById('voice').options].some(o => o.value === 'en_US-joe-medium')")
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys("Hello from the browser. This audio was made on the server.")
    Select(browser.find_element(By.ID, "format")).select_by_value("wav")
    browser.find_element(By.ID, "speak").click()
    wait_until(browser, "return document.getElementById('status').textContent.startsWith('done')")

    player = browser.find_element(By.ID, "player")
    assert player.get_attribute("src").startswith("blob:")
    link = browser.find_element(By.ID, "download")
    assert int(link.get_attribute("data-bytes")) > 50_000  # seconds of 16-bit audio at 22.05 kHz
    duration = wait_until(browser, "const a = document.getElementById('player');"
                          "return a.readyState >= 1 && a.duration > 0 ? a.duration : false")
    assert 2.0 < duration < 10.0  # the browser decoded it: playable
    assert link.get_attribute("download") == "speech.wav" and link.get_attribute("href").startswith("blob:")

    browser.find_element(By.ID, "timings").click()
    browser.find_element(By.ID, "speak").click()
    wait_until(browser, "return document.getElementById('status').textContent.startsWith('done')"
                        " && document.querySelectorAll('#words span').length > 0")
    shown = browser.execute_script("return [...document.querySelectorAll('#words span')]"
                                   ".map(s => s.firstChild.textContent)")
    assert shown == ["Hello", "from", "the", "browser", "This", "audio", "was", "made", "on", "the", "server"]
    wait_until(browser, "const a = document.getElementById('player'); return a.readyState >= 1 && a.duration > 0")

    screenshot = os.environ.get("TAILOR_SCREENSHOT")
    if screenshot:
        Path(screenshot).write_bytes(browser.get_screenshot_as_png())


def test_a_bad_request_shows_the_servers_message(browser: Any, live_server: LiveServer) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.base_url}/")
    browser.find_element(By.ID, "key").send_keys(API_KEY)
    browser.execute_script("document.getElementById('key').dispatchEvent(new Event('change'))")
    wait_until(browser, "return document.getElementById('voice').options.length > 0"
                        " && document.getElementById('status').className !== 'error'")
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys("x" * 201)  # the live server's TAILOR_MAX_INPUT_CHARS is 200
    browser.find_element(By.ID, "speak").click()
    wait_until(browser, "return document.getElementById('status').className === 'error'")
    assert "TAILOR_MAX_INPUT_CHARS" in browser.find_element(By.ID, "status").text


def test_the_page_is_open_but_captioned_speech_needs_the_key(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.base_url}/").status_code == 200
    assert httpx.get(f"{live_server.base_url}/ui", follow_redirects=True).status_code == 200
    for route in ("/v1/audio/captioned_speech", "/dev/captioned_speech"):
        refused = httpx.post(f"{live_server.base_url}{route}", json={"input": "Hi."})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
