"""Finding 14 in Chromium: a remote image in a previewed message (captured mail, moderation link) is never
loaded, so its sender cannot learn that a moderator opened the page; the HTML itself is still shown."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Page, expect

from engine import clock, demo
from engine.lists.models import MailingList
from engine.outbound import mail
from engine.posting import moderation
from engine.posting.models import Message, MessageState
from tests import factories as f

pytestmark = pytest.mark.browser



@pytest.fixture
def pixel() -> Iterator[tuple[str, list[str]]]:
    """A tracking-pixel server on loopback: the URL of its image and the paths it was asked for."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.end_headers()
            self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/pixel.gif", asked
    server.shutdown()
    server.server_close()
    thread.join(5)


def html_mail(pixel_url: str, subject: str) -> bytes:
    return (f"From: Traceur <traceur@example.net>\r\nTo: comite_directeur.comite@listes.ffessm-demo.fr\r\n"
            f"Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
            f"<p>Bonjour le comit\u00e9</p><img src=\"{pixel_url}?opened\" alt=\"\">\r\n").encode()


def log_in(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Numéro de licence ou adresse e-mail").fill(demo.ADMIN_LICENCE)
    page.get_by_label("Mot de passe").fill(demo.DEMO_PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()


def test_finding14_previews_load_no_remote_image(settings, db, live_server, page: Page, pixel) -> None:  # type: ignore[no-untyped-def]
    f.cheap_password_hashing()
    demo.build(settings, members=10)
    pixel_url, asked = pixel
    key = mail.capture(settings.capture_dir, html_mail(pixel_url, "Courrier capture"))
    board = MailingList.get(MailingList.local_part == "comite_directeur.comite")
    raw = html_mail(pixel_url, "En attente")
    held = Message.create(mailing_list=board, content=raw, size=len(raw), state=MessageState.HELD,
                          author="traceur@example.net", envelope_sender="traceur@example.net",
                          subject="En attente", received_at=clock.now())
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text
            else None)
    log_in(page, live_server.url)
    for path in (f"/admin/messages/captured/{key}", moderation.moderation_url(settings, held)
                 .replace(settings.base_url, ""), f"/admin/messages/{held.id}"):
        page.goto(live_server.url + path, wait_until="load")  # "load" waits for the frames' images too
        expect(page.frame_locator("iframe.mail-body").get_by_text("Bonjour le comité")).to_be_visible()
    assert asked == [], f"the sender learnt the page was opened: {asked}"
    assert any("img-src" in text for text in refused)
