"""The portal answers in a real browser, in French by default and in English on request."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_home_page_in_french_then_english(page: Page, live_server):
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Bienvenue sur Palanquée")
    expect(page.get_by_role("link", name="Se connecter")).to_be_visible()
