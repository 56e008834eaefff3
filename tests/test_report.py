"""On the demo run: the Snakemake report renders in headless Chromium with its tables
and images, and the README target is idempotent.

Chromium and its WebDriver are the Debian packages ``chromium`` and
``chromium-driver`` (``tests/setup_chromium.sh`` installs them). The browser is
driven over the W3C WebDriver protocol with the standard library, so no Python
package is needed.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import DEMO_ARGS, markdown_cells, snakemake

ELEMENT = "element-6066-11e4-a52f-4d695cc6fa9d"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000"]

pytestmark = pytest.mark.demo


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


class WebDriver:
    """The few W3C WebDriver commands the test needs, over HTTP to chromedriver."""

    def __init__(self, chromium: str, driver: str, profile: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                self._call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium, "args": [*CHROMIUM_ARGS, f"--user-data-dir={profile}"]}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise AssertionError(f"WebDriver {method} {path}: {e.read().decode(errors='replace')}") from None

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def js(self, script: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script: str, *args, timeout: float = 20):
        deadline = time.time() + timeout
        while True:
            value = self.js(script, *args)
            if value or time.time() > deadline:
                return value
            time.sleep(0.2)

    def find(self, css: str):
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})

    def enter_frame(self, element) -> None:
        self.cmd("POST", "/frame", {"id": element})

    def leave_frame(self) -> None:
        self.cmd("POST", "/frame/parent", {})

    def quit(self) -> None:
        try:
            self.cmd("DELETE", "")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def report_html(demo_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"  # outside the shared demo run
    snakemake([*DEMO_ARGS, "--report", str(path)], demo_run)
    assert path.stat().st_size > 100_000
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    paths = _browser_paths()
    if paths is None:
        pytest.fail("headless Chromium is needed: run tests/setup_chromium.sh (Debian chromium, chromium-driver)")
    driver = WebDriver(*paths, tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


# What the report must hold: (path, kind), kind "html" for a table page, "img" for a plot.
EXPECTED = {
    "results/tables/results.html": "html",
    "results/tables/comparison.html": "html",
    "results/tables/published.html": "html",
    "results/tables/coverage.html": "html",
    "results/tables/diagnostics.html": "html",
    "results/tables/sft.html": "html",
    "results/tables/bt_vs_genrm.html": "html",
    "results/contamination/report.html": "html",
    "results/plots/sections.png": "img",
    "results/plots/subset_heatmap.png": "img",
    "results/plots/genrm_vs_base/tiny-instruct/verify.png": "img",
    "results/plots/genrm_vs_base/tiny-instruct/verify_correct.png": "img",
}


def test_front_page_explains_the_run(report_html, browser):
    browser.open(report_html.as_uri())
    text = browser.wait("return document.readyState === 'complete' && document.body.innerText.includes("
                        "'What this run did') ? document.body.innerText : null")
    assert text, "the front page did not render"
    for phrase in ("GenRM on RewardBench", "demo:preferences", "Tiny-Instruct", "Tiny-GenRM / Verify Only",
                   "Tiny-Instruct / Bradley-Terry (ours) (on the same pairs)",
                   "Tiny-Reward (untrained)", "How judges are scored", "Results against the published figures",
                   "contaminated training rows were"):
        assert phrase in text, phrase
    # the comparison table is on the front page, one row per judge of the demo
    rows = browser.js("return [...document.querySelectorAll('.genrm-tables table tr')].map(r => r.innerText)")
    assert len(rows) == 1 + 5
    assert any("Tiny-GenRM" in r and "reproduced (no published row)" in r for r in rows)


def test_every_table_and_plot_renders(report_html, browser):
    browser.open(report_html.as_uri())
    browser.wait("return typeof results !== 'undefined' && typeof app !== 'undefined'")
    entries = browser.js("return Object.fromEntries(Object.entries(results).map("
                         "([k, v]) => [k, {mime: v.mime_type, caption: v.caption, category: v.category}]))")
    assert set(EXPECTED) <= set(entries), sorted(set(EXPECTED) - set(entries))
    for path, kind in EXPECTED.items():
        entry = entries[path]
        assert entry["mime"] == ("text/html" if kind == "html" else "image/png"), path
        assert len(entry["caption"] or "") > 100, f"{path} has no caption"
        # what the result's view button does
        browser.js("app.setView({content: arguments[1], contentPath: results[arguments[0]].data_uri,"
                   " resultPath: arguments[0]})", path, kind)
        if kind == "img":
            size = browser.wait("const i = [...document.querySelectorAll('#app img')]"
                                ".find(i => i.src === results[arguments[0]].data_uri);"
                                " return i && i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight]"
                                " : null", path)
            assert size and size[0] > 300 and size[1] > 200, path
        else:
            assert browser.wait("return document.querySelector('#app iframe') !== null"), path
            browser.enter_frame(browser.find("#app iframe"))
            try:
                cells = browser.wait("return document.readyState === 'complete' &&"
                                     " document.querySelectorAll('table td').length")
                header = browser.js("const h = document.querySelector('table th'); return h && h.innerText")
            finally:
                browser.leave_frame()
            assert cells and cells >= 4 and header, path


def test_menu_lists_the_categories(report_html, browser):
    browser.open(report_html.as_uri())
    text = browser.wait("return typeof categories !== 'undefined' && document.body.innerText")
    categories = browser.js("return Object.keys(categories)")
    assert {"1. Results", "2. Plots", "3. Diagnostics", "4. Contamination"} <= set(categories)
    assert "1. Results" in text  # in the menu of the front page


def test_readme_target_is_idempotent(demo_copy):
    from genrm.report.tables import replace_between_markers

    demo_run = demo_copy
    readme = demo_run / "README.md"  # start from an empty results block: the first run must fill it
    readme.write_text(replace_between_markers(readme.read_text(), ""))
    subprocess.run(["git", "init", "-q"], cwd=demo_run, check=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "README.md"], cwd=demo_run, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "before"], cwd=demo_run, check=True)
    snakemake([*DEMO_ARGS, "--cores", "1", "readme"], demo_run)
    text = (demo_run / "README.md").read_text()
    assert "#### Tiny" in text
    assert any(markdown_cells(line)[:2] == ["**Tiny-GenRM**", "**Verify Only ‡**"] for line in text.splitlines())
    subprocess.run([*git, "commit", "-q", "-am", "first"], cwd=demo_run, check=True)
    snakemake([*DEMO_ARGS, "--cores", "1", "readme"], demo_run)
    diff = subprocess.run(["git", "diff", "--exit-code"], cwd=demo_run, capture_output=True, text=True)
    assert diff.returncode == 0, diff.stdout
