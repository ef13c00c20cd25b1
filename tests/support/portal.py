"""Helpers of the portal tests, written once: the CSRF token of a form page, and the login form submitted as
a person would submit it. Test modules keep their own short names for these (``csrf``, ``token_of``,
``_csrf``, ``login``, ``log_in``) as aliases or thin wrappers."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

PASSWORD = "bonne-plongee-2026"  # factories.member_with_password's default
CSRF_FIELD = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def demo_app(settings: Any, members: int = 10) -> Flask:
    """The portal (TESTING) over the demo federation of ``members`` members, passwords hashed cheaply.
    The connections it opens are released by tests/conftest.py's teardown, after the test."""
    from engine import demo
    from portal import create_app
    from tests import factories

    factories.cheap_password_hashing()
    demo.build(settings, members=members)
    return create_app(settings, config={"TESTING": True})


def csrf(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on ``path`` (fetched with ``client``: tokens belong to its session)."""
    page = client.get(path).get_data(as_text=True)
    found = CSRF_FIELD.search(page)
    assert found, f"no CSRF token in the page at {path}"
    return found.group(1)


def submit_login(client: FlaskClient, identifier: str, password: str = PASSWORD, path: str = "/login",
                 **extra: Any) -> TestResponse:
    """Fill in and submit the login form (licence number or address, password, its CSRF token)."""
    data = {"identifier": identifier, "password": password, "csrf_token": csrf(client, path), **extra}
    return client.post(path, data=data)


def logged_in(client: FlaskClient, identifier: str, password: str = PASSWORD) -> FlaskClient:
    """``client`` after a successful login (the form answers with a redirect)."""
    response = submit_login(client, identifier, password)
    assert response.status_code == 302, (identifier, response.status_code)
    return client
