"""Finding 14: hardening headers, and who may read captured mail (never decided by a header the sender wrote)."""

from __future__ import annotations

import re
import smtplib

from flask import Flask
from flask.testing import FlaskClient

from engine import demo
from engine.lists.models import MailingList
from engine.outbound.mail import read_captured
from tests.security.conftest import wait_until

PROVENCE_BOARD = "comite_directeur.comite@listes.ffessm-demo.fr"
NATIONAL_OWNER = "licencies.national-owner@listes.ffessm-demo.fr"


def assert_hardened(response) -> None:  # type: ignore[no-untyped-def]
    policy = response.headers.get("Content-Security-Policy", "")
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in policy.split(";") if d.strip())
    assert directives.get("img-src") == "'self' data:", policy
    assert directives.get("frame-ancestors") == "'none'" and directives.get("script-src") == "'self'", policy
    assert "'unsafe-inline'" not in policy and "*" not in policy
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") == "same-origin"
    assert response.headers.get("X-Frame-Options") == "DENY"


def test_finding14_every_kind_of_response_carries_the_hardening_headers(app: Flask, federal: FlaskClient):
    anonymous = app.test_client()
    ml = MailingList.get(MailingList.local_part == "licencies.provence")
    requests = [(anonymous.get, "/login"), (anonymous.get, "/"), (anonymous.get, "/espace/"),
                (anonymous.get, "/nowhere"), (anonymous.get, "/logout"), (anonymous.get, "/static/palanquee.css"),
                (anonymous.get, "/healthz"), (anonymous.get, "/u/forged-token"), (anonymous.post, "/login"),
                (federal.get, "/admin/"), (federal.get, f"/admin/lists/{ml.id}/optouts.csv"),
                (federal.get, "/admin/messages/captured"), (federal.get, f"/admin/lists/{ml.id}/criteria")]
    for send, path in requests:
        with send(path) as response:
            assert_hardened(response)


def test_finding14_pages_hold_no_inline_script(app: Flask, federal: FlaskClient):
    ml = MailingList.get(MailingList.local_part == "licencies.provence")
    for path in ("/admin/", f"/admin/lists/{ml.id}/criteria", "/admin/messages/", "/espace/", "/admin/import"):
        page = federal.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), path  # the policy would block it
        assert not re.search(r"\son[a-z]+=", page), path


def captured_subjects(client: FlaskClient) -> str:
    return client.get("/admin/messages/captured").get_data(as_text=True)


def test_finding14_a_forged_x_loop_does_not_show_owner_mail_to_regional_staff(app, engine_smtp, regional, federal):
    """Mail to a national list's owner is passed on with its sender's headers: its X-Loop names a Provence list."""
    forged = ("From: Curieux <curieux@example.net>\r\nTo: " + NATIONAL_OWNER + "\r\n"
              "X-Loop: " + PROVENCE_BOARD + "\r\nSubject: Confidentiel pour le national\r\n\r\nSecret.\r\n")
    genuine = (f"From: {demo.DEMO_POSTER}\r\nTo: {PROVENCE_BOARD}\r\nSubject: Sortie du comite\r\n\r\nBonjour.\r\n")
    with smtplib.SMTP(*engine_smtp, timeout=30) as client:
        client.sendmail("curieux@example.net", [NATIONAL_OWNER], forged.encode())
        client.sendmail(demo.DEMO_POSTER, [PROVENCE_BOARD], genuine.encode())
    folder = app.extensions["palanquee.settings"].capture_dir

    def delivered() -> bool:
        subjects = [m["Subject"] for m in read_captured(folder)]
        return "Confidentiel pour le national" in subjects and "Sortie du comite" in "".join(subjects)

    wait_until(delivered, what="the owner's copy and the board's copies in the capture")
    assert "Confidentiel pour le national" in captured_subjects(federal)
    regional_page = captured_subjects(regional)
    assert "Sortie du comite" in regional_page  # the copies of their own list, named by the signed return path
    assert "Confidentiel pour le national" not in regional_page
    keys = re.findall(r'/admin/messages/captured/([^"]+)"', captured_subjects(federal))
    shown = [regional.get(f"/admin/messages/captured/{key}") for key in keys]
    assert all("Confidentiel" not in r.get_data(as_text=True) for r in shown)
    assert 404 in [r.status_code for r in shown] and 200 in [r.status_code for r in shown]
