"""A tenant admin manages a credential in a real browser; the key never comes back out.

Chromium is Debian's package (see devservices/browser.py), driven by Playwright against
the real web server; validation calls the fake provider over HTTP from the web process.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit

import pytest

from fake_llm.client import key_sha256
from tests.conftest import canary_key

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("KEYFLOW_CHROMIUM"),
        reason="KEYFLOW_CHROMIUM is unset: no Chromium (`python3 dev.py test` installs "
        "Debian's chromium package when it runs as root)",
    ),
]

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 15_000


class Browsing:
    """A page plus the source of every document it loaded, to search for leaked secrets."""

    def __init__(self, page) -> None:
        self.page = page
        self.sources: list[tuple[str, str]] = []

    def _record(self, response) -> None:
        if response is not None and response.status < 300:
            self.sources.append((response.url, response.text()))
        self.sources.append((self.page.url, self.page.content()))

    def goto(self, url: str):
        response = self.page.goto(url)
        self._record(response)
        return response

    def navigate_by(self, act) -> None:
        """Run `act` (a click, a select) that makes the page load a new document."""
        with self.page.expect_navigation() as navigation:
            act()
        self._record(navigation.value)

    def run_action(self, action: str, credential_id: str) -> None:
        page = self.page
        page.locator(f'input[name="_selected_action"][value="{credential_id}"]').check()
        page.locator("select[name=action]").select_option(action)
        self.navigate_by(lambda: page.locator("button[name=index]").click())


def tenant_url(web_server, tenant, path: str) -> str:
    port = urlsplit(web_server.base_url).port
    return f"http://{tenant.domain.domain}:{port}{path}"


def test_admin_adds_validates_and_defaults_a_credential_without_the_key_coming_back(
    web_server, fake, provisioned_tenants
):
    from playwright.sync_api import expect, sync_playwright

    alpha, beta = provisioned_tenants["alpha"], provisioned_tenants["beta"]
    canary = canary_key()
    name = f"browser-openai-{secrets.token_hex(4)}"
    credentials_url = tenant_url(web_server, alpha, "/admin/credentials/credential/")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ["KEYFLOW_CHROMIUM"], headless=True, args=CHROMIUM_ARGS,
        )
        try:
            context = browser.new_context()
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            browsing = Browsing(page)

            # Sign in as alpha's admin.
            browsing.goto(tenant_url(web_server, alpha, "/admin/"))
            assert urlsplit(page.url).path == "/admin/login/"
            page.locator("input[name=username]").fill(alpha.admin_email)
            page.locator("input[name=password]").fill(alpha.admin_password)
            browsing.navigate_by(lambda: page.locator("input[type=submit]").click())
            assert urlsplit(page.url).path == "/admin/", page.url
            expect(page.locator("#user-tools")).to_contain_text(alpha.admin_email)

            # Add an OpenAI credential pointing at the fake provider; choosing a provider
            # reloads the form with that provider's fields.
            browsing.goto(credentials_url + "add/")
            provider = page.locator("select[name=provider]")
            for provider_id in ("anthropic", "openai"):
                browsing.navigate_by(lambda pid=provider_id: provider.select_option(pid))
                assert f"provider={provider_id}" in page.url, page.url
                expect(provider).to_have_value(provider_id)
            expect(page.locator("input[name=config__organization]")).to_have_count(1)
            page.locator("input[name=name]").fill(name)
            page.locator("input[name=secret__api_key]").fill(canary)
            page.locator("input[name=config__base_url]").fill(fake.url + "/v1")
            browsing.navigate_by(lambda: page.locator("input[name=_save]").click())
            # The admin capitalises the first letter of messages, hence ignore_case.
            expect(page.locator("ul.messagelist li.success")).to_contain_text(
                name, ignore_case=True
            )
            assert urlsplit(page.url).path == "/admin/credentials/credential/", page.url

            # Only our credential in the list from now on; its id comes from the row.
            browsing.goto(f"{credentials_url}?q={name}")
            row = page.locator("#result_list tbody tr").filter(has_text=name)
            expect(row).to_have_count(1)
            credential_id = row.locator('input[name="_selected_action"]').get_attribute("value")
            expect(row.locator("td.field-masked_key")).to_contain_text(canary[-4:])
            expect(row.locator("td.field-is_default img")).to_have_attribute("alt", "False")

            # Validate: the web process calls the fake provider with the key typed above.
            browsing.run_action("validate_selected", credential_id)
            expect(page.locator("ul.messagelist li.success")).to_contain_text(
                f"{name}: valid.", ignore_case=True
            )
            expect(row.locator("td.field-validation_badge")).to_have_text("Valid")
            served = fake.calls(key_sha256=key_sha256(canary))
            assert [call["operation"] for call in served] == ["models"], served
            assert served[0]["status"] == 200, served

            # Make it the default for OpenAI; the list shows it.
            browsing.run_action("set_default", credential_id)
            # (the admin reports this one at level info, not success)
            expect(page.locator("ul.messagelist li.info")).to_contain_text(
                f"{name} is now the default for openai.", ignore_case=True
            )
            expect(row.locator("td.field-is_default img")).to_have_attribute("alt", "True")

            # The change page never pre-fills the secret.
            browsing.navigate_by(lambda: row.locator("th.field-name a").click())
            assert credential_id in page.url
            secret_input = page.locator("input[name=secret__api_key]")
            expect(secret_input).to_have_attribute("type", "password")
            expect(secret_input).to_have_value("")
            assert secret_input.get_attribute("value") in (None, "")
            expect(page.locator("input[name=config__base_url]")).to_have_value(fake.url + "/v1")

            # Disable it again: it is committed, and an active OpenAI default left behind
            # would change what later tests in tenant alpha resolve.
            browsing.goto(f"{credentials_url}?q={name}")
            browsing.run_action("disable_selected", credential_id)
            expect(page.locator("ul.messagelist li.info")).to_contain_text(
                "Disabled 1 credential(s)."
            )
            expect(row.locator("td.field-status")).to_have_text("Disabled")
            expect(row.locator("td.field-is_default img")).to_have_attribute("alt", "False")

            # The session belongs to alpha's host: beta's admin asks to sign in.
            browsing.goto(tenant_url(web_server, beta, "/admin/"))
            assert urlsplit(page.url).path == "/admin/login/", page.url
            expect(page.locator("input[name=password]")).to_be_visible()
            expect(page.locator("#user-tools")).to_have_count(0)
        finally:
            browser.close()

    assert len(browsing.sources) >= 10
    # Listed by URL only: pytest would otherwise print the page around the leaked key.
    leaked = [
        url for url, source in browsing.sources
        if any(fragment in source for fragment in (canary, canary[-12:]))
    ]
    assert leaked == [], "the key (or its last 12 characters) is in these pages"
