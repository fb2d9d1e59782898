"""The API reference page in headless Chromium: what a person sees once the page's scripts ran."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def visible_text(page: Any) -> str:
    # Swagger UI breaks long paths with zero-width spaces after each "/".
    return str(page.inner_text("body")).replace("\u200b", "")


def scroll_through(page: Any, step: int = 700) -> set[str]:
    """Scroll the page from top to bottom; every operation path rendered on the way."""
    seen: set[str] = set()
    page.evaluate("window.scrollTo(0, 0)")
    while True:
        page.wait_for_timeout(60)
        seen |= {str(p.get_attribute("data-path")) for p in page.query_selector_all(".opblock-summary-path")}
        before = page.evaluate("window.scrollY")
        page.evaluate(f"window.scrollBy(0, {step})")
        if page.evaluate("window.scrollY") == before:
            return seen


def test_every_path_of_the_document_is_shown_on_the_docs_page(browser: Any, live_url: str, tmp_path: Path) -> None:
    paths = list(httpx.get(f"{live_url}/v1/openapi.json").json()["paths"])
    requested: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_url}/v1/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    page.screenshot(path=str(tmp_path / "api-reference.png"), full_page=True)

    text = visible_text(page)
    assert "Unable to render this definition" not in text
    assert "MVNE platform API" in text
    # A long document is virtualized (Swagger UI renders the operations near the viewport): scroll through it
    # as a reader would, gathering every path that comes into view.
    shown = scroll_through(page)
    assert set(paths) <= shown, sorted(set(paths) - shown)
    assert not errors, errors
    foreign = [url for url in requested if not url.startswith(live_url) and not url.startswith("data:")]
    assert not foreign, f"the page must work offline: {foreign}"
    assert (tmp_path / "api-reference.png").stat().st_size > 10_000
    page.close()


def test_authorize_with_client_credentials_then_try_a_call(browser: Any, live_url: str, tenant: Any) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{live_url}/v1/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)

    page.click("button.authorize")
    dialog = page.locator(".auth-container").filter(has_text="clientCredentials")
    dialog.locator("#client_id_clientCredentials").fill(tenant.client_id)
    dialog.locator("#client_secret_clientCredentials").fill(tenant.secret)
    dialog.locator("label[for='offers:read-clientCredentials-checkbox-oauth2']").click()
    dialog.locator("button.authorize").click()
    dialog.get_by_text("Logout").wait_for(timeout=15_000)
    assert "Authorized" in dialog.inner_text()
    page.click("button.btn-done")

    page.fill(".operation-filter-input", "offers")  # the filter box narrows the list to one tag's operations
    operation = page.locator("#operations-offers-get_v1_offers")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=15_000)

    assert re.sub(r"\D", "", status.inner_text()) == "200", status.inner_text()
    assert '"has_more"' in operation.locator(".live-responses-table").inner_text()
    page.close()
