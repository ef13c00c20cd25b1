"""Helpers of the browser tests, written once: logging in through the login page, as a person does."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.support.portal import PASSWORD


def log_in(page: Page, url: str, licence: str, password: str = PASSWORD) -> None:
    """Open the login page of the portal at ``url``, type the licence number and password, press the button."""
    page.goto(url + "/login")
    page.get_by_label("Numéro de licence ou adresse e-mail").fill(licence)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").click()
