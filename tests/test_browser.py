"""The console in a real browser: Debian's Chromium, headless, driven by Selenium
through chromedriver. Each page is opened, the redeliver button is pressed (a real
form POST with the browser's own Origin and Fetch metadata) after logging in through
the login URL; `make screenshots` (RUNHOOK_SCREENSHOTS=1) writes a picture of each
page, and of the docs' front page, to docs/images/ for the docs."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import settled

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS = Path(__file__).resolve().parent.parent / "docs"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    # `make test` installs both when it runs as root (as CI does); elsewhere say why.
    pytestmark = pytest.mark.skip(reason="no /usr/bin/chromium or /usr/bin/chromedriver: "
                                  "apt-get install chromium chromium-driver (make test does, "
                                  "as root)")

CONFIG = """
[secrets]
SIGNING = { file = "@DIR@/signing.key" }

[integrations.ci]
kind = "webhook"
url = "@URL@"
signing_secret = "SIGNING"
allow_http = true
allow_private = true
rate = "20/s"

[[automations]]
name = "run-failed"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["failed"], run_name = "^prod-" }
action = { integration = "ci", payload = '''{"text": "${run_name} ${run_status}", "run": "${run_id}"}''' }
cooldown = "1h"

[[automations]]
name = "loss-diverged"
scope = "project:acme/vision"
event = { kind = "RUN_METRIC_THRESHOLD", metric = "loss", agg = "avg", window = 3, cmp = ">", threshold = 10.0 }
action = { integration = "ci" }

[[automations]]
name = "record-artifacts"
scope = "project:acme/vision"
event = { kind = "CREATE_ARTIFACT" }
action = { kind = "none" }
"""


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="rh-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def pictures(tmp_path: Path) -> Path:
    """Where the screenshots go: docs/images/ for `make screenshots`, else the test's own
    directory, so a plain run leaves the tree alone."""
    return DOCS / "images" if os.environ.get("RUNHOOK_SCREENSHOTS") else tmp_path


def fit(driver: Any, width: int) -> None:
    """Grow the window until the whole page is in view (a full-page screenshot): the
    window's height is not the page's viewport (headless Chromium keeps some for
    itself), so the gap is measured and made up, then measured again."""
    driver.set_window_size(width, 900)
    for _ in range(3):
        inner, full = driver.execute_script(
            "return [window.innerHeight, document.documentElement.scrollHeight]")
        if full <= inner:
            return
        outer = driver.get_window_size()["height"]
        driver.set_window_size(width, min(outer + full - inner + 8, 4000))


def _shot(driver, name: str, folder: Path) -> None:
    """A full-page screenshot at 1280 px."""
    fit(driver, 1280)
    path = folder / f"console-{name}.png"
    assert driver.save_screenshot(str(path))
    assert path.read_bytes().startswith(b"\x89PNG")
    driver.set_window_size(1280, 900)


async def test_the_console_in_chromium(start_daemon, receiver, browser, tmp_path):
    from selenium.webdriver.common.by import By
    # `make screenshots` writes them to docs/images/; a plain run leaves the tree alone.
    folder = pictures(tmp_path)
    receiver.responses.append((503, "upstream busy", {"Retry-After": "3600"}))
    daemon = await start_daemon(CONFIG.replace("@URL@", receiver.url))
    async with daemon.client() as client:
        await client.send({"type": "run.state", "entity": "acme", "project": "vision",
                           "run_id": "r1", "run_name": "prod-<b>resnet</b>", "state": "failed"})
        for version in range(1, 4):
            await client.send({"type": "artifact.created", "entity": "acme",
                               "project": "vision", "collection": "imagenet-subset",
                               "version": version})
        for value in (9.0, 12.0, 15.0):
            await client.send({"type": "run.metrics", "entity": "acme", "project": "vision",
                               "run_id": "r2", "run_name": "prod-vit", "values": {"loss": value}})
    failed_id = (await receiver.next()).headers["webhook-id"]  # answered 503: retried later
    await settled(daemon, (await receiver.next()).headers["webhook-id"])

    # Without a session the console only says how to get one; the login URL that
    # `runhook console` prints sets the cookie and lands on the page, token-free.
    browser.get(daemon.http + "/")
    assert "runhook console" in browser.find_element(By.TAG_NAME, "body").text
    browser.get(daemon.login_url())
    assert browser.current_url == daemon.http + "/"
    assert browser.title == "Overview · runhook"
    rows = browser.find_elements(By.CSS_SELECTOR, "table")[0].text
    assert "run-failed" in rows and "loss-diverged" in rows and "record-artifacts" in rows
    # Recent executions name their automation and run as links, as the list does, and
    # an event kind wraps at its underscores, not inside a word.
    recent = browser.find_elements(By.CSS_SELECTOR, "table")[-1]
    assert {"run-failed", "prod-vit"} <= {a.text for a in recent.find_elements(By.TAG_NAME, "a")}
    assert "CREATE_<wbr>ARTIFACT" in recent.get_attribute("innerHTML")
    _shot(browser, "overview", folder)

    browser.get(daemon.http + "/automations")
    _shot(browser, "automations", folder)
    browser.find_element(By.LINK_TEXT, "loss-diverged").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Automation loss-diverged"
    assert "avg(loss) over last 3 > 10" in browser.find_element(By.TAG_NAME, "dl").text
    browser.get(daemon.http + "/executions")
    browser.find_element(By.LINK_TEXT, failed_id).click()
    # The hostile run name is text, not markup, in the variables table.
    assert browser.find_elements(By.CSS_SELECTOR, "main b") == []
    assert "prod-<b>resnet</b>" in browser.find_element(By.TAG_NAME, "main").text
    assert "HTTP 503" in browser.find_element(By.TAG_NAME, "main").text
    _shot(browser, "execution", folder)
    # A real form POST: Chromium sends Origin and Sec-Fetch-Site itself.
    browser.find_element(By.XPATH, "//button[contains(., 'redeliver')]").click()
    assert f"queued for redelivery: {failed_id}" in await asyncio.to_thread(flash, browser)
    again = await receiver.next()
    assert again.headers["webhook-id"] == failed_id

    browser.get(daemon.http + "/integrations")
    # In a thread: the page waits for the test's request, which the receiver on this
    # test's event loop must be free to answer.
    button = browser.find_element(By.XPATH, "//tr[@id='ci']//button[contains(., 'test')]")
    await asyncio.to_thread(button.click)
    assert "test of ci: status 200" in await asyncio.to_thread(flash, browser)
    _shot(browser, "integrations", folder)


def flash(browser: Any) -> str:
    """The message the page shows after a form POST, once the page it redirects to has
    loaded: `click` returns when the click is dispatched, not when the navigation is
    over (under load the old page was still there). Waits in the browser, bounded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    found = WebDriverWait(browser, 20).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, ".flash"))
    return str(found[0].text)


WIDTHS = (800, 1400)


async def test_executions_and_runs_fit_from_800_px_to_wide(start_daemon, receiver, browser,
                                                          tmp_path):
    """At 800 and 1400 px the executions list and the Runs page fit the window (no
    column off to the right: at 900 px STATE, TRIES and REASON were), and the run
    name in a row leads to the run's page, its group to the group's runs."""
    from selenium.webdriver.common.by import By
    folder = pictures(tmp_path)
    config = CONFIG.replace("@URL@", receiver.url) + """
[[automations]]
name = "run-crashed"
scope = "project:acme/vision"
event = { kind = "RUN_STATE", states = ["crashed"], heartbeat_timeout = "10m" }
action = { kind = "none" }
"""
    daemon = await start_daemon(config)
    async with daemon.client() as client:
        for n, values in enumerate(([0.9, 0.7, 0.55, 0.5], [3.0, 9.0, 14.0, 18.0])):
            run = {"entity": "acme", "project": "vision", "run_id": f"7f3a9c0{n}",
                   "run_name": f"sweep-lr-{n}", "group": "sweep-7f3a"}
            await client.send({"type": "run.state", **run, "state": "running"})
            for value in values:
                await client.send({"type": "run.metrics", **run, "values": {"loss": value}})
        for version in range(1, 3):
            await client.send({"type": "artifact.created", "entity": "acme",
                               "project": "vision", "collection": "imagenet-subset",
                               "version": version})
    await settled(daemon, (await receiver.next()).headers["webhook-id"])
    browser.get(daemon.login_url())
    for width in WIDTHS:
        for name in ("executions", "runs"):
            browser.set_window_size(width, 900)
            browser.get(f"{daemon.http}/{name}")
            inner, wide = browser.execute_script(
                "return [window.innerWidth, document.documentElement.scrollWidth]")
            assert wide <= inner, (name, width, wide, inner)
            header = browser.find_elements(By.CSS_SELECTOR, "th")[-1]
            assert header.rect["x"] + header.rect["width"] <= inner, (name, width)
            fit(browser, width)
            assert browser.save_screenshot(str(folder / f"console-{name}-{width}.png"))
    browser.get(daemon.http + "/executions")
    browser.find_element(By.LINK_TEXT, "sweep-lr-1").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == "Run sweep-lr-1"
    main = browser.find_element(By.TAG_NAME, "main").text
    assert "9 14 18" in main and "crashed if silent until" in main
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    fit(browser, 1400)
    assert browser.save_screenshot(str(folder / "console-run-1400.png"))
    browser.find_element(By.LINK_TEXT, "sweep-7f3a").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "table tr")
    assert {"sweep-lr-0", "sweep-lr-1"} <= {r.text.split(" ")[0] for r in rows[1:]}
    # The pictures: a metric firing's window against its threshold, an automation's
    # executions per hour.
    browser.get(daemon.http + "/executions?automation=loss-diverged")
    browser.find_element(By.CSS_SELECTOR, "td.id a").click()
    assert "What the condition saw" in browser.find_element(By.TAG_NAME, "main").text
    fit(browser, 1400)
    assert browser.save_screenshot(str(folder / "console-execution-metric-1400.png"))
    browser.find_element(By.LINK_TEXT, "loss-diverged").click()
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    fit(browser, 1400)
    assert browser.save_screenshot(str(folder / "console-automation-1400.png"))


def test_the_docs_front_page(browser, tmp_path):
    """The site as `make docs` builds it, opened from disk: the front page shows the
    nav and the console's picture (it loads: the path is right)."""
    from selenium.webdriver.common.by import By
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                    str(site)], cwd=DOCS.parent, check=True, capture_output=True,
                   env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    browser.set_window_size(1400, 900)
    browser.get((site / "index.html").as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text == "runhook"
    assert "A ten-minute tour" in browser.find_element(By.CSS_SELECTOR, "nav.md-nav--primary").text
    picture = browser.find_element(By.CSS_SELECTOR, "article img")
    assert browser.execute_script("return arguments[0].naturalWidth", picture) > 0
    fit(browser, 1400)
    assert browser.save_screenshot(str(pictures(tmp_path) / "docs-front-1400.png"))
