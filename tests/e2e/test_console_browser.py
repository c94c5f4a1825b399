"""The console in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright pointed at that binary)
against every service as a process on the real stack.

One walk, as an admin would do it: sign in; the overview lists the instance; make a registration token on the
authority's page and register the instance with it (by keyboard, through the confirmation); an over-consumption
shows on the overview without a reload, and the instance page shows its alert and deadline; the chart has one point
per closed interval and license; a silence is set and cleared. Then a viewer sees no control and is refused a post;
a post without its CSRF token is refused; every form field has a label; and no request of the whole walk left the
console's origin. With CCXLIC_SCREENSHOTS=DIR the overview and the instance page are saved there (`make
screenshots` writes docs/screenshots/)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from ccxlic_runtime.auth import Role, open_auth
from ccxlic_runtime.kafka import EventProducer
from ccxlic_testing.build import Build
from ccxlic_testing.plugin import Stack
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.e2e.conftest import Pipeline
from tests.e2e.test_smart_agent import ok

pytestmark = pytest.mark.e2e
PASSWORD = "a long enough secret"
M, H = timedelta(minutes=1), timedelta(hours=1)


def chromium() -> str:
    path = os.environ.get("CCXLIC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the browser tests need Debian's chromium (make test installs it; or set CCXLIC_CHROMIUM)"
    return path


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=chromium(), headless=True)
        yield b
        await b.close()


class Watched:
    """A browser context that records every request it makes."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.requests: list[str] = []
        context.on("request", lambda request: self.requests.append(request.url))


async def _context(browser: Browser, watched: list[Watched]) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    watched.append(Watched(context))
    return await context.new_page()


async def _sign_in(page: Page, base: str, user: str) -> None:
    await page.goto(f"{base}/")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {user}")).to_be_visible()


async def _screenshot(page: Page, name: str, tmp: Path) -> None:
    where = Path(os.environ.get("CCXLIC_SCREENSHOTS") or tmp)
    where.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(where / f"{name}.png"), full_page=True)


async def test_the_console_in_a_browser(
    licensing: Pipeline,
    producer: EventProducer,
    browser: Browser,
    stack: Stack,
    instance_id: str,
    tmp_path: Path,
) -> None:
    p, env = licensing, licensing.env
    base = env["CCXLIC_CONSOLE_URL"]
    async with open_auth(stack.database_url, env["CCXLIC_AUTH_SCHEMA"]) as auth:
        await auth.create_user("ada", Role.admin, PASSWORD)
        await auth.create_user("vic", Role.viewer, PASSWORD)
    account = f"va-{instance_id}"
    await asyncio.to_thread(ok, env, "authority", "account", account, "--smart-account", "acme")
    await asyncio.to_thread(ok, env, "authority", "deposit", account, "--standard", "10", "--premium", "2")
    b = Build(instance_id)
    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    await producer.publish_many([b.sign_in(t0, "s1", "inbound_voice")])  # the instance appears, in evaluation
    await p.until("compliance", f"/v1/instances/{instance_id}/compliance", lambda c: True)
    watched: list[Watched] = []

    # ---- sign in; the overview lists the instance
    page = await _context(browser, watched)
    await _sign_in(page, base, "ada")
    row = page.locator(f'tr.instance-row[data-instance="{instance_id}"]')
    await expect(row).to_contain_text("Evaluation")

    # ---- a registration token from the authority's page, then register with it, by keyboard
    await page.get_by_role("link", name="Licensing authority").click()
    await page.get_by_label("Notification addresses").fill("licensing@acme.example")  # the smart account's mail
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("p.message.good")).to_contain_text("notification addresses of acme saved")
    await expect(page.get_by_label("Notification addresses")).to_have_value("licensing@acme.example")
    await page.get_by_role("link", name=account).click()
    premium = page.locator("table.balances tr", has_text="Flex Premium")  # purchased 2, none in use yet
    await expect(premium.locator("td").nth(0)).to_have_text("2")
    await expect(premium.locator("td").nth(3)).to_have_text("surplus")
    await page.get_by_label("Description").fill("for the browser test")
    await page.get_by_role("button", name="New token").click()
    token = await page.get_by_label("Registration token").input_value()
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", token), token
    await page.goto(f"{base}/instances/{instance_id}")
    await page.get_by_label("Registration token").first.focus()
    await page.keyboard.type(token)
    await page.keyboard.press("Enter")  # submits the Register form: a confirmation first
    await expect(page.locator("#question")).to_have_text(
        f"Register {instance_id} with the licensing authority using this token?"
    )
    await expect(page.get_by_role("button", name="Yes, register")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#result")).to_contain_text("Done:")
    await page.get_by_role("link", name=f"Back to {instance_id}").click()
    await expect(page.locator("#instance-state")).to_have_text("Authorized")

    # ---- an over-consumption: the overview shows it without a reload; the instance page, its alert and deadline
    await page.goto(f"{base}/")
    await expect(row).to_contain_text("Authorized")
    t1 = datetime.now(UTC).replace(microsecond=0) + M
    await producer.publish_many([b.sign_in(t1 + k * M, f"p{k}", "chat") for k in range(4)])
    await expect(row).to_contain_text("over entitlement (detected)")  # the page refreshed itself
    await expect(row.locator("meter").first).to_have_attribute("aria-label", "Premium: 4 of 2 in use, 2 over")
    await expect(row).to_contain_text("OutOfComplianceDetected (warning)")
    await expect(row).to_contain_text("Out of compliance in 4")  # 45 min from the over-consumption
    await _screenshot(page, "overview", tmp_path)
    await row.get_by_role("link", name=instance_id).click()
    await expect(page.locator("#active-alerts")).to_contain_text("OutOfComplianceDetected (warning)")
    await expect(page.locator("#deadlines")).to_contain_text("Out of compliance in")

    # ---- two closed reporting intervals: the chart has a point per interval and license
    await producer.publish_many([b.tick(t1 + 9 * H), b.tick(t1 + 17 * H)])
    reports = await p.until(
        "consumption",
        f"/v1/instances/{instance_id}/intervals?from={(t0 - 24 * H).isoformat().replace('+00:00', 'Z')}"
        f"&to={(t1 + 48 * H).isoformat().replace('+00:00', 'Z')}",
        lambda body: len({r["interval_start"] for r in body["reports"]}) >= 2,
        90,
    )
    intervals = len({r["interval_start"] for r in reports["reports"]})
    await p.until(
        "alerting",
        f"/v1/alerts?state=active&instance={instance_id}",
        lambda body: any(a["alert"] == "OutOfCompliance" for a in body["alerts"]),
        90,
    )
    await page.reload()
    chart = page.locator("svg.chart")
    await expect(chart).to_have_attribute("data-intervals", str(intervals))
    await expect(chart.locator("circle.point")).to_have_count(3 * intervals)
    await expect(chart.locator("circle.point.premium").first).to_have_attribute("data-peak", "4")
    await expect(page.locator("#to-buy")).to_contain_text("Premium 2")
    await expect(page.locator("#forecast-none")).to_contain_text("too little history")  # hours of it, not weeks
    await expect(page.locator("#history")).to_contain_text("authorization: authorized → out_of_compliance")
    await _screenshot(page, "instance", tmp_path)
    async with page.expect_download() as fetched:
        await page.get_by_role("link", name="Download CSV").click()
    download = await fetched.value
    csv = Path(await download.path()).read_text()
    assert csv.splitlines()[0].startswith("interval_start,") and len(csv.splitlines()) == 1 + intervals

    # ---- a silence, set and cleared
    await page.get_by_label("Alert", exact=True).select_option("OutOfCompliance")
    await page.get_by_label("Hours").fill("2")
    await page.get_by_label("Comment").fill("buying licenses")
    await page.get_by_role("button", name="Silence", exact=True).click()
    await expect(page.locator("p.message.good")).to_contain_text("set")
    silence = page.locator("tr.silence")
    await expect(silence).to_have_count(1)
    await expect(silence).to_contain_text("OutOfCompliance")
    await expect(silence).to_contain_text("ada")
    await silence.get_by_role("button", name="Unsilence").click()
    await expect(page.locator("p.message.good")).to_contain_text("cleared")
    await expect(page.locator("tr.silence")).to_have_count(0)

    # ---- a post without its CSRF token is refused, even from the signed-in admin's own page
    await page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    await page.get_by_role("button", name="Renew authorization now…").click()
    await expect(page.locator("p.message.bad")).to_contain_text("CSRF token is missing or wrong")

    # ---- every field has a label; states are in words (the colour repeats them)
    await page.goto(f"{base}/instances/{instance_id}")
    unlabelled = await page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
           .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.outerHTML)"""
    )
    assert unlabelled == []
    await expect(page.locator("#instance-state")).to_have_text(re.compile(r"Out of compliance"))

    # ---- a viewer sees no control, and a post of theirs is refused
    viewer = await _context(browser, watched)
    await _sign_in(viewer, base, "vic")
    await viewer.goto(f"{base}/instances/{instance_id}")
    await expect(viewer.get_by_text("only an admin can change anything")).to_be_visible()
    assert await viewer.locator("form[action$='/actions'], form[action*='/silences']").count() == 0
    csrf = await viewer.locator("input[name=csrf]").first.input_value()
    refused = await viewer.request.post(
        f"{base}/instances/{instance_id}/actions",
        form={"csrf": csrf, "operation": "deregister", "confirmed": "yes"},
    )
    assert refused.status == 403 and "only an admin may change anything" in await refused.text()
    await viewer.goto(f"{base}/authority/accounts/{account}")
    assert await viewer.get_by_role("button", name="New token").count() == 0
    # the account's plan (need, holds, short) is shown to a viewer too, without the buttons that carry it out
    plan = viewer.locator("#plan")
    await expect(plan).to_contain_text("Plan: stay within its licenses")
    await expect(plan.locator("table.plan-needs tr", has_text="Flex Premium").locator("td").nth(1)).to_have_text("2")
    assert await viewer.get_by_role("button", name="Move them now").count() == 0

    # ---- the registration stands (nothing the viewer did reached the agent); nothing left this machine
    status, agent = await p.get("agent", f"/v1/instances/{instance_id}/agent")
    assert status == 200 and agent["status"] == "registered", agent
    origin = urlsplit(base)
    for w in watched:
        assert w.requests, "the walk made requests"
        outside = [
            u for u in w.requests if urlsplit(u).netloc != origin.netloc and not u.startswith(("data:", "blob:"))
        ]
        assert outside == [], outside
