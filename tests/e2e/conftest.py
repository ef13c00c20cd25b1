"""Browser fixtures: the portal served from a thread on 127.0.0.1, driven by Debian's Chromium."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server

from engine.config import Settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:  # type: ignore[type-arg]
    # Debian's Chromium; `playwright install` cannot download here. The flags keep it off the network.
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"],
    }


@pytest.fixture
def browser_context_args(browser_context_args: dict) -> dict:  # type: ignore[type-arg]
    return {**browser_context_args, "locale": "fr-FR", "timezone_id": "Europe/Paris"}


@dataclass
class LiveServer:
    url: str
    app: object
    settings: Settings


@pytest.fixture
def live_server(settings: Settings, db) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The real portal on a free loopback port, sharing the test's database."""
    from portal import create_app

    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield LiveServer(f"http://127.0.0.1:{server.server_port}", app, settings)
    server.shutdown()
    thread.join(5)
    server.server_close()
