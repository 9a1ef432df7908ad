"""End to end: `mosaicrec serve` under uvicorn, the web page driven in headless Chromium.

Needs Debian's chromium (`apt-get install -y chromium chromium-driver`) and Playwright's Python
package. Skipped only when /usr/bin/chromium is missing outside CI; in CI (CI=true) it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosaicrec.utils import wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{CHROMIUM} is missing in CI: install it with `apt-get install -y chromium chromium-driver`")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium chromium-driver); runs in CI")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def server(toy_run, tmp_path):
    port = _free_port()
    log = tmp_path / "serve.log"
    out = log.open("w")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "mosaicrec", "serve", str(toy_run), "--port", str(port),
                             "--threads", "1"], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(proc, f"{url}/health", 120, "mosaicrec serve", detail=lambda: log.read_text()[-2000:], poll=0.3)
        except RuntimeError as err:
            pytest.fail(str(err))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()


def _add_first(page, query: str, domain: str) -> str:
    page.fill("#search", query)
    page.select_option("#search-domain", domain)
    page.click("#search-form button[type=submit]")
    first = page.locator("#results li").first  # the page clears old results when a search starts
    first.wait_for(timeout=15_000)
    item_id = first.get_attribute("data-id")
    assert first.get_attribute("data-domain") == domain
    first.locator("button.add").click()
    return item_id


def test_page_builds_a_history_and_shows_recommendations_per_domain(server):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_function("document.querySelector('#info').textContent.includes('sasrec')", timeout=15_000)
            history = [_add_first(page, "item f", "Food"), _add_first(page, "kitchen item k1", "Kitchen"),
                       _add_first(page, "item f2", "Food")]
            assert page.locator("#history li").count() == 3
            assert [li.get_attribute("data-id") for li in page.locator("#history li").all()] == history
            page.click("#recommend")
            for domain in ("Food", "Kitchen"):
                rows = page.locator(f".domain-recs[data-domain={domain}] li")
                rows.first.wait_for(timeout=15_000)
                assert rows.count() == 10
                assert {r.get_attribute("data-domain") for r in rows.all()} == {domain}
                assert not {r.get_attribute("data-id") for r in rows.all()} & set(history)  # seen excluded
                assert all(r.locator(".title").inner_text().strip() for r in rows.all())
            assert page.locator("#message").inner_text() == ""
        finally:
            browser.close()


@pytest.fixture()
def bag_server(toy_data):
    """A model with explain() (per-domain weights), served by uvicorn in a thread."""
    import threading

    import uvicorn
    from tests.serving.toys import BagModel, context

    from mosaicrec.serving.app import create_app
    from mosaicrec.serving.service import Service

    svc = Service(BagModel(BagModel.Config(), context(toy_data, 5)), toy_data, 5, model_name="bag")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_page_shows_the_weights_of_models_that_explain(bag_server):
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(bag_server + "/")
            page.wait_for_function("document.querySelector('#info').textContent.includes('bag')", timeout=15_000)
            for query, domain in (("item f1", "Food"), ("item f2", "Food"), ("item f3", "Food"), ("item k4", "Kitchen")):
                _add_first(page, query, domain)
            page.click("#recommend")
            page.locator("#explain table").first.wait_for(timeout=15_000)
            assert page.locator("#explain caption").inner_text() == "domain_weights"
            rows = [r.inner_text().split() for r in page.locator("#explain tr").all()]
            assert rows == [["Food", "0.750"], ["Kitchen", "0.250"]]  # 3 of 4 history items are Food
        finally:
            browser.close()
