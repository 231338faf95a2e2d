"""The console in a real browser: Debian's chromium, driven by Playwright for Python
(pointed at /usr/bin/chromium; nothing is downloaded), against a real ``gatewayd run``
and ``gatewayd smsc-sim``. Sign in; watch an SMS sent through SMTP go Queued ->
Delivered on the dashboard and in the list without a reload; send a fax from the form
(previewed first) and see its page thumbnails; send an SMS from the form; sign out.
No page may log an error (a Content-Security-Policy violation is one).

Screenshots of the dashboard, the list and a fax are written to the test's directory,
and also to ``$GATEWAYD_SCREENSHOTS`` when set (``docs/img`` for the README).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from gatewayd.credentials import hash_password
from tests import documents
from tests.integration.test_daemon import start, wait_for
from tests.integration.test_sms_daemon import simulator
from tests.shipped_config import shipped_config
from tests.smtp_client import free_port, message, send

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "browser-test-password"
EMAIL = "alice@example.com"

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, smtp_port: int, api_port: int, sim_port: int) -> Path:
    path = shipped_config(
        tmp_path,
        smtp_port=smtp_port,
        api_port=api_port,
        sim_port=sim_port,
        log_file=tmp_path / "gatewayd.log",
    )
    text = path.read_text()
    for old, new in (
        ('smtp_password_hash = ""', f'smtp_password_hash = "{hash_password(PASSWORD)}"'),
        ("api_admin = false", "api_admin = true"),
        ('refresh_interval = "5s"', 'refresh_interval = "1s"'),
        ('retry_delay = "30s"', 'retry_delay = "1s"'),
        ('reconnect_delay = "2s"', 'reconnect_delay = "0.5s"'),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[BrowserContext]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is needed (/usr/bin/chromium): apt-get install chromium")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()


def _watch(page: Page, errors: list[str]) -> Page:
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def _shot(page: Page, tmp_path: Path, name: str, *, publish: bool = True) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("GATEWAYD_SCREENSHOTS")
    if target and publish:
        shutil.copyfile(path, Path(target) / path.name)
    return path


def test_the_console_in_chromium(tmp_path: Path, browser_context: BrowserContext) -> None:
    smtp_port, api_port, sim_port = free_port(), free_port(), free_port()
    config = _config(tmp_path, smtp_port, api_port, sim_port)
    daemon = start(config)
    sim: subprocess.Popen[str] | None = None
    errors: list[str] = []
    base = f"http://127.0.0.1:{api_port}/console"
    try:
        wait_for(daemon, "daemon.started")
        page = _watch(browser_context.new_page(), errors)
        # -- sign in (the wrong password first)
        page.goto(f"{base}/")
        expect(page).to_have_url(f"{base}/login?next=%2Fconsole%2F")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        expect(page.locator(".problem")).to_have_text("Wrong e-mail address or password.")
        page.fill("input[name=email]", EMAIL)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/dashboard")
        assert [e for e in errors if "401" not in e] == []  # the wrong password's answer
        errors.clear()
        page.evaluate("window.__stayed = true")  # gone if the page reloads
        listing = _watch(browser_context.new_page(), errors)
        listing.goto(f"{base}/messages")
        listing.evaluate("window.__stayed = true")

        # -- an SMS through SMTP, Queued while the SMSC is down, then Delivered
        reply = send(
            smtp_port,
            EMAIL,
            ["+4915112340000@sms.example.com"],
            message(to="+4915112340000@sms.example.com", body="Hello from mail"),
        )
        assert reply.code == 250, reply
        message_id = reply.text.split()[-1]
        row = f'tr[data-message="{message_id}"] .status'
        expect(page.locator(row)).to_have_text("Queued", timeout=15_000)
        expect(listing.locator(row)).to_have_text("Queued", timeout=15_000)
        expect(page.locator('tr[data-link="simulator"] .state')).to_have_class("state down")
        expect(page.locator('tr[data-queue="SMS"] td').nth(1)).to_have_text("1")
        sim = simulator(sim_port)
        expect(page.locator(row)).to_have_text("Delivered", timeout=30_000)
        expect(listing.locator(row)).to_have_text("Delivered", timeout=30_000)
        expect(page.locator('tr[data-link="simulator"] .state')).to_have_text("bound")
        assert page.evaluate("window.__stayed") is True  # no reload
        assert listing.evaluate("window.__stayed") is True
        expect(page.locator("#chart-hour .uplot")).to_be_visible(timeout=15_000)
        expect(page.locator("#chart-hour[data-loaded]")).to_have_count(1)
        listing.close()

        # -- a fax from the form: preview, send, then its pages as thumbnails
        pdf = tmp_path / "contract.pdf"
        pdf.write_bytes(documents.dense_text_pdf(2))
        page.goto(f"{base}/send/fax")
        page.fill("input[name=to]", "+4940123456")
        page.set_input_files("input[name=documents]", str(pdf))
        page.fill("textarea[name=note]", "Please sign both pages.")
        page.click("button[value=preview]")
        expect(page.locator("#preview h2")).to_have_text("Preview: 3 pages", timeout=60_000)
        _loaded(page, "#preview img", 3)
        assert page.url == f"{base}/send/fax"  # htmx: the form stays, files and all
        page.click("button[value=send]")
        page.wait_for_url(f"{base}/messages/*")
        _loaded(page, "ul.pages img", 3, timeout=60)  # rendered by the fax dispatcher
        expect(page.locator("#status .status")).to_have_text("Queued")  # at the spool
        _shot(page, tmp_path, "console-fax")

        # -- an SMS from the form, the part count as one types
        page.goto(f"{base}/send/sms")
        page.fill("input[name=to]", "+4915112345678")
        page.locator("textarea[name=text]").press_sequentially("Hi")
        expect(page.locator("#count")).to_contain_text("1 part · GSM-7")
        page.fill("textarea[name=text]", "Привет " * 11)
        page.locator("textarea[name=text]").press("End")
        page.locator("textarea[name=text]").press_sequentially("!")
        expect(page.locator("#count")).to_contain_text("2 parts · UCS-2")
        page.fill("textarea[name=text]", "Sent from the console form")
        page.click("#sms-form button[type=submit]")
        page.wait_for_url(f"{base}/conversations/*")
        bubble = page.locator(".bubble.out", has_text="Sent from the console form")
        expect(bubble.locator(".status")).to_have_text("Delivered", timeout=30_000)

        # -- screenshots, with everything above in them
        page.goto(f"{base}/messages")
        expect(page.locator("tr[data-message]")).to_have_count(3)
        _shot(page, tmp_path, "console-messages")
        page.goto(f"{base}/dashboard")
        _charted(page, "Delivered", 2)
        _shot(page, tmp_path, "console-dashboard")

        # -- a phone, in the dark: nothing wider than the screen, the dark colours
        page.set_viewport_size({"width": 390, "height": 844})
        page.emulate_media(color_scheme="dark")
        for path in ("/messages", "/dashboard", "/send/fax", f"/messages/{message_id}"):
            page.goto(f"{base}{path}")
            wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert wide <= 0, f"{path} is {wide}px wider than a phone"
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(17, 21, 28)"  # --bg in the dark
        _shot(page, tmp_path, "console-phone-dark", publish=False)
        page.emulate_media(color_scheme="light")
        page.set_viewport_size({"width": 1280, "height": 860})

        # -- sign out
        page.click(".signout button")
        expect(page).to_have_url(f"{base}/login")
        page.goto(f"{base}/messages")
        expect(page).to_have_url(f"{base}/login?next=%2Fconsole%2Fmessages")
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
        if sim is not None:
            sim.send_signal(signal.SIGTERM)
            sim.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert errors == []


def _charted(page: Page, status: str, count: int) -> None:
    """Wait until the hour chart has drawn ``count`` messages entering ``status``."""
    series = "/console/dashboard/series?range=hour"
    script = (
        "async ([url, status]) => { const r = await fetch(url); const d = await r.json();"
        " return d.series.find(s => s.label == status).values.reduce((a, b) => a + b, 0); }"
    )
    deadline = time.monotonic() + 30
    while page.evaluate(script, [series, status]) < count:
        assert time.monotonic() < deadline, f"the chart never showed {count} {status}"
        page.wait_for_timeout(500)
    page.wait_for_timeout(2500)  # the chart's next refresh draws it


def _loaded(page: Page, selector: str, count: int, timeout: float = 30) -> None:
    """``count`` images under ``selector``, each decoded by the browser."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = page.evaluate(
            "s => Array.from(document.querySelectorAll(s))"
            ".filter(i => i.complete && i.naturalWidth > 0).length",
            selector,
        )
        if done >= count:
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"{selector}: fewer than {count} images loaded within {timeout}s")
