"""Fixtures of the security regression tests (issue 11): the demo federation behind the real portal, and
clients logged in as its member, its regional staff (Provence) and its federation administrator."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine import demo
from tests.support.portal import demo_app


@pytest.fixture
def app(settings, db) -> Flask:  # type: ignore[no-untyped-def]
    return demo_app(settings)


def token_of(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.get_data(as_text=True))
    assert match, path
    return match.group(1)


def log_in(client: FlaskClient, identifier: str, password: str = demo.DEMO_PASSWORD, **extra: str):  # type: ignore[no-untyped-def]
    return client.post("/login", data={"identifier": identifier, "password": password,
                                       "csrf_token": token_of(client, "/login"), **extra})


def logged_in(app: Flask, licence: str) -> FlaskClient:
    client = app.test_client()
    assert log_in(client, licence).status_code == 302
    return client


@pytest.fixture
def regional(app: Flask) -> FlaskClient:
    return logged_in(app, demo.STAFF_LICENCE)


@pytest.fixture
def federal(app: Flask) -> FlaskClient:
    return logged_in(app, demo.ADMIN_LICENCE)


@pytest.fixture
def member_client(app: Flask) -> FlaskClient:
    return logged_in(app, demo.MEMBER_LICENCE)


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The same portal served by werkzeug's threaded server on a free loopback port (real concurrent requests)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    server.server_close()


@pytest.fixture
def engine_smtp(app: Flask) -> Iterator[tuple[str, int]]:
    """The real list engine (SMTP intake on a free loopback port, delivery to the capture), on the app's database."""
    from engine import db as engine_db
    from engine.runtime import EngineThread

    thread = EngineThread(app.extensions["palanquee.settings"], smtp=("127.0.0.1", 0), lmtp=None, poll_seconds=0.1)
    engine = thread.start()
    yield engine.bound["smtp"]
    thread.stop()
    if not thread.engine.database.is_closed():
        thread.engine.database.close()
    engine_db.bind(engine_db.shared(app.extensions["palanquee.settings"].database_url))


def wait_until(condition, timeout: float = 60.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it holds or the deadline passes (never a fixed sleep)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
