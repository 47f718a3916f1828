"""The dashboard in a real headless browser (Debian's chromium, driven by selenium): the page
loads, shows a job the test started, and follows a log line written after it opened. A
screenshot is kept in the test's tmp dir (dashboard.png)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.executor.linux.cleanup import teardown
from tests.e2e.service import ServiceProc
from tests.e2e.test_cli import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip(
        "no browser: Debian's chromium and chromium-driver are not installed "
        "(scripts/install-deps installs them)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

JOB = """
job "shop" {
  group "web" {
    task "api" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo dashboard-saw-this-line' HUP; echo booted; while true; do sleep 0.1; done"]
      }
      kill_signal = "SIGTERM"
    }
  }
}
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProc]:
    root = tmp_path_factory.mktemp("ui")
    jobs = root / "jobs"
    jobs.mkdir()
    (jobs / "shop.hcl").write_text(JOB)
    (jobs / "broken.hcl").write_text('job "broken" {\n  group "g" {\n    count = "two"\n  }\n}\n')
    port = free_port()
    s = ServiceProc(jobs, root / "data", "--http-addr", f"127.0.0.1:{port}")
    s.port = port  # type: ignore[attr-defined]
    s.start()
    s.wait(lambda: len(s.pids("shop")) == 1)
    yield s
    s.kill()
    teardown(s.data)


@pytest.fixture
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="rc-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1100,1400"):  # fmt: skip
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=DriverService(executable_path=str(DRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_page_shows_the_job_and_follows_its_log(svc: ServiceProc, browser: Any, tmp_path: Path) -> None:
    browser.get(f"http://127.0.0.1:{svc.port}/ui/")  # type: ignore[attr-defined]
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#jobs tr[data-job="shop"]'))
    wait.until(lambda d: "Ready" in row.text or "Reconciling" in row.text)
    task = browser.find_element(By.CSS_SELECTOR, '#tasks tr[data-task="shop/web/0/api"]')
    assert "running" in task.text
    wait.until(lambda d: "broken.hcl:3" in d.find_element(By.ID, "problems").text)
    task.find_element(By.CSS_SELECTOR, "button.logs").click()
    logs = browser.find_element(By.ID, "logs")
    wait.until(lambda d: "booted" in logs.text)
    svc.cli("signal", "shop/api", "HUP")  # a line written after the page opened
    wait.until(lambda d: "dashboard-saw-this-line" in logs.text)
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
    shot = tmp_path / "dashboard.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    browser.set_window_size(390, 900)  # a phone: tables scroll sideways, text stays readable
    browser.save_screenshot(str(tmp_path / "dashboard-phone.png"))
    print(f"screenshots: {shot} and dashboard-phone.png")
