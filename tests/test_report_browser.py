"""report.html in a real browser: every figure decodes, the console stays clean, nothing is
fetched, and the page fits a laptop screen. Uses Debian's chromium and chromium-driver
(``apt-get install -y --no-install-recommends chromium chromium-driver``) through Selenium;
leaves a full-page screenshot beside the report for a human to look at.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install -y --no-install-recommends chromium chromium-driver)",
)

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--hide-scrollbars",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from sim.report.write import write_report
    from sim.runs.runner import run
    from sim.runs.scenario import load_scenario

    full = load_scenario(ROOT / "scenarios" / "seed-practice.yaml")
    world = full.world.model_copy(update={"horizon": 3600.0})
    loaded = dataclasses.replace(full, scenario=full.scenario.model_copy(update={"world": world}))
    result = run(world, loaded.policies, replications=10, seed=1, backend="inprocess")
    return write_report(result, loaded, tmp_path_factory.mktemp("browser") / "report")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def test_report_renders_in_chromium(report: Path, browser) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get((report / "report.html").as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);"
    )
    n_figures = len(list((report / "figures").glob("*.png")))
    assert len(images) == n_figures > 0
    for alt, complete, width in images:
        assert complete and width > 0, f"figure did not load: {alt}"

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => !n.startsWith('data:'));"
    )
    assert fetched == []  # nothing from disk or network beyond the page itself
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
    )
    assert overflow <= 0  # readable at 1280 px without sideways scrolling

    assert "is the safest" in browser.find_element("css selector", "section.verdict").text
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1280, min(int(height) + 120, 16000))
    shot = report.parent / "report-screenshot.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
