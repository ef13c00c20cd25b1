"""Staff pages of the engine: message list and progress, moderation (staff page and mailed link), captured mail."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta

import pytest

from engine import clock
from engine.bounces import verp
from engine.directory.models import StaffScope, StructureKind
from engine.outbound import mail
from engine.outbound.models import Delivery, DeliveryState
from engine.posting import moderation
from engine.posting.models import Message, MessageState
from portal import create_app
from tests import factories as f
from tests.support.portal import csrf, logged_in

PASSWORD = "bonne-plongee-2026"
RAW = (b"From: Paul <paul@example.org>\r\nTo: cd@listes.example.fr\r\nSubject: Sortie du dimanche\r\n"
       b"Message-ID: <m1@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBonjour \xc3\xa0 tous\r\n")


@pytest.fixture
def world(settings, db):  # type: ignore[no-untyped-def]
    national = f.structure("FFESSM", kind=StructureKind.FEDERATION)
    provence = f.structure("Provence", kind=StructureKind.REGIONAL, parent=national)
    bretagne = f.structure("Bretagne", kind=StructureKind.REGIONAL, parent=national)
    domain = f.domain("listes.example.fr", structure=national)
    ours = f.mailing_list("cd", domain, structure=provence)
    theirs = f.mailing_list("cd.bretagne", domain, structure=bretagne)
    staff = f.member_with_password(email="staff@example.fr")
    StaffScope.create(member=staff, structure=provence, granted_at=clock.now())
    plain = f.member_with_password(email="plain@example.fr")
    messages = {}
    for name, mailing_list, state in (("held", ours, MessageState.HELD), ("sending", ours, MessageState.SENDING),
                                      ("other", theirs, MessageState.HELD)):
        messages[name] = Message.create(mailing_list=mailing_list, content=RAW, size=len(RAW), state=state,
                                        author="paul@example.org", envelope_sender="paul@example.org",
                                        subject=f"Sortie {name}", received_at=clock.now(), recipient_count=3)
    now = clock.now()
    for address, state, reply in (("a@example.org", DeliveryState.SENT, "250 ok"),
                                  ("b@example.org", DeliveryState.FAILED, "550 5.1.1 No such user"),
                                  ("c@example.org", DeliveryState.QUEUED, "")):
        Delivery.create(message=messages["sending"], address=address, state=state, last_reply=reply,
                        next_attempt_at=now, updated_at=now)
    # the counters the engine keeps as it records results (engine/outbound/outbox.py)
    Message.update(sent_count=1, failed_count=1).where(Message.id == messages["sending"].id).execute()
    messages["sending"] = Message.get_by_id(messages["sending"].id)
    app = create_app(dataclasses.replace(settings, smarthost=""), config={"TESTING": True})
    return {"app": app, "staff": staff, "plain": plain, **messages}


def _client(world, member=None):  # type: ignore[no-untyped-def]
    client = world["app"].test_client()
    return logged_in(client, member.licence_number, PASSWORD) if member is not None else client


_csrf = csrf


def test_staff_sees_their_messages_with_progress_and_failures(world) -> None:  # type: ignore[no-untyped-def]
    client = _client(world, world["staff"])
    page = client.get("/admin/messages/").get_data(as_text=True)
    assert "Sortie held" in page and "Sortie sending" in page and "Sortie other" not in page
    assert "1 message attend une modération" in page
    detail = client.get(f"/admin/messages/{world['sending'].id}").get_data(as_text=True)
    assert "550 5.1.1 No such user" in detail and "b@example.org" in detail
    progress = client.get(f"/admin/messages/{world['sending'].id}/progress.json").get_json()
    assert progress == {"message_id": world["sending"].id, "state": "sending", "recipients": 3, "sent": 1,
                        "deferred": 0, "failed": 1, "queued": 1, "percent": 66, "finished": False}


def test_other_regions_messages_and_non_staff_are_kept_out(world) -> None:  # type: ignore[no-untyped-def]
    client = _client(world, world["staff"])
    other = world["other"].id
    assert client.get(f"/admin/messages/{other}").status_code == 404
    assert client.get(f"/admin/messages/{other}/progress.json").status_code == 404
    token = _csrf(client, "/admin/messages/")
    assert client.post(f"/admin/messages/{other}/decide", data={"action": "approve", "csrf_token": token}
                       ).status_code == 404
    assert Message.get_by_id(other).state == MessageState.HELD
    plain = _client(world, world["plain"])
    for path in ("/admin/messages/", f"/admin/messages/{world['held'].id}", "/admin/messages/captured"):
        assert plain.get(path).status_code == 403
    assert _client(world).get("/admin/messages/").status_code == 302  # anonymous: to the login page


def test_staff_approves_a_held_message_and_csrf_is_required(world) -> None:  # type: ignore[no-untyped-def]
    client = _client(world, world["staff"])
    held = world["held"].id
    assert client.post(f"/admin/messages/{held}/decide", data={"action": "approve"}).status_code == 400
    assert Message.get_by_id(held).state == MessageState.HELD
    token = _csrf(client, f"/admin/messages/{held}")
    client.post(f"/admin/messages/{held}/decide", data={"action": "approve", "csrf_token": token})
    assert Message.get_by_id(held).state == MessageState.ACCEPTED


def test_mailed_moderation_link_shows_then_decides(world, settings) -> None:  # type: ignore[no-untyped-def]
    client = _client(world)
    held = world["held"]
    url = moderation.moderation_url(settings, held).replace(settings.base_url, "")
    page = client.get(url)
    assert page.status_code == 200 and "Bonjour à tous" in page.get_data(as_text=True)
    assert Message.get_by_id(held.id).state == MessageState.HELD  # a GET changes nothing
    token = _csrf(client, url)
    client.post(url, data={"action": "reject", "reason": "Hors sujet", "csrf_token": token})
    rejected = Message.get_by_id(held.id)
    assert rejected.state == MessageState.REJECTED and rejected.reason == "Hors sujet"
    [notice] = mail.read_captured(settings.capture_dir)
    assert notice["To"] == "paul@example.org" and "Hors sujet" in notice.get_content()
    assert "déjà été traité" in client.get(url).get_data(as_text=True)


def test_bad_and_expired_moderation_links(world, settings) -> None:  # type: ignore[no-untyped-def]
    client = _client(world)
    assert client.get("/moderation/not-a-token").status_code == 404
    other_key = dataclasses.replace(settings, secret_key="another-secret-key-of-enough-length")
    forged = moderation.moderation_url(other_key, world["held"]).replace(settings.base_url, "")
    assert client.get(forged).status_code == 404
    with clock.frozen(clock.now() - timedelta(days=30)):
        old = moderation.moderation_url(settings, world["held"]).replace(settings.base_url, "")
    assert client.get(old).status_code == 410


def test_captured_mail_is_listed_and_shown_as_received(world, settings) -> None:  # type: ignore[no-untyped-def]
    copy = RAW.replace(b"Subject: Sortie du dimanche", b"Subject: Copie capturee\r\nX-Loop: cd@listes.example.fr")
    delivery = Delivery.get(Delivery.address == "a@example.org")  # a copy of a message to "cd" (Provence)
    token = verp.make_token(verp.signing_key(settings), delivery.id)
    mail.capture(settings.capture_dir, f"Return-Path: <cd-bounces+{token}@listes.example.fr>\r\n".encode()
                 + b"Delivered-To: a@example.org\r\n" + copy)
    # who may read a copy is read from its signed return path, never from a header its sender wrote
    other = RAW.replace(b"Subject: Sortie du dimanche",
                        b"Subject: Autre region\r\nX-Loop: cd@listes.example.fr")
    mail.capture(settings.capture_dir, b"Return-Path: <cd-bounces+1.0000000000@listes.example.fr>\r\n" + other)
    client = _client(world, world["staff"])
    listing = client.get("/admin/messages/captured").get_data(as_text=True)
    assert "Copie capturee" in listing and "Autre region" not in listing
    key = re.search(r'/admin/messages/captured/([^"]+)"', listing).group(1)
    shown = client.get(f"/admin/messages/captured/{key}").get_data(as_text=True)
    assert "Bonjour à tous" in shown and "a@example.org" in shown
    assert client.get("/admin/messages/captured/../../etc").status_code == 404


def test_a_decision_through_the_mailed_link_is_logged_as_the_moderator(world, settings) -> None:  # type: ignore[no-untyped-def]
    from engine.audit import AuditEvent

    moderator = f.member(first_name="Mona", email="mona@example.org")
    client = _client(world)  # nobody logged in: the link is the authority
    url = moderation.moderation_url(settings, world["held"], "Mona@example.org").replace(settings.base_url, "")
    client.post(url, data={"action": "approve", "csrf_token": _csrf(client, url)})
    approved = Message.get_by_id(world["held"].id)
    assert approved.state == MessageState.ACCEPTED and approved.decided_by_id == moderator.id
    event = AuditEvent.get(AuditEvent.action == "message.approved")
    assert (event.actor_id, event.actor_label, event.details["moderator"]) == (moderator.id, "", "Mona@example.org")
    staff = _client(world, world["staff"])
    page = staff.get("/admin/audit?action=message.approved").get_data(as_text=True)
    assert f"Mona {moderator.last_name} ({moderator.licence_number})" in page and "le système" not in page


def test_held_reason_and_mail_headers_read_in_the_readers_language(world, settings) -> None:  # type: ignore[no-untyped-def]
    from engine.posting.policy import HELD_REASON

    Message.update(reason=HELD_REASON).where(Message.id == world["held"].id).execute()
    delivery = Delivery.get(Delivery.address == "a@example.org")  # a genuine copy of a list the staff manage
    token = verp.make_token(verp.signing_key(settings), delivery.id)
    mail.capture(settings.capture_dir, f"Return-Path: <cd-bounces+{token}@listes.example.fr>\r\n".encode()
                 + b"Delivered-To: a@example.org\r\nDate: Thu, 26 Nov 2026 13:05:00 +0000\r\n" + RAW)
    client = _client(world, world["staff"])
    for language, reason, date, labels in (
            ("fr", "l’expéditeur n’est pas autorisé à écrire à cette liste", "26 novembre 2026 à 14 h 05",
             ("<dt>De</dt>", "<dt>Objet du message</dt>")),
            ("en", "the sender is not allowed to post to this list", "26 November 2026 at 14:05",
             ("<dt>From</dt>", "<dt>Subject</dt>"))):
        detail = client.get(f"/admin/messages/{world['held'].id}?lang={language}").get_data(as_text=True)
        assert reason in detail and HELD_REASON not in detail
        listing = client.get("/admin/messages/captured").get_data(as_text=True)
        assert date in listing and "+0000" not in listing  # in Europe/Paris, in words
        key = re.search(r'/admin/messages/captured/([^"]+)"', listing).group(1)
        shown = client.get(f"/admin/messages/captured/{key}").get_data(as_text=True)
        assert all(label in shown for label in labels) and date in shown, shown[shown.find("<dl"):][:600]


def test_undelivered_copies_are_listed_by_state_then_address_a_page_at_a_time(world) -> None:  # type: ignore[no-untyped-def]
    """Deferred copies first, then failed ones, each in address order (read so from the index), 50 a page;
    sent and queued copies are not listed; the states in the reader's language."""
    now = clock.now()
    message = world["sending"]
    rows = [dict(message=message, address=f"{kind}{n:02d}@example.org", state=state, last_reply=f"{code} n{n}",
                 attempts=n % 4, next_attempt_at=now, updated_at=now)
            for n in reversed(range(30))
            for kind, state, code in (("d", DeliveryState.DEFERRED, "451"), ("f", DeliveryState.FAILED, "550"),
                                      ("s", DeliveryState.SENT, "250"), ("q", DeliveryState.QUEUED, ""))]
    Delivery.insert_many(rows).execute()
    client = _client(world, world["staff"])
    first = client.get(f"/admin/messages/{message.id}").get_data(as_text=True)
    second = client.get(f"/admin/messages/{message.id}?page=2").get_data(as_text=True)
    shown = [re.findall(r'<tr><td class="address">([^<]+)</td>', page) for page in (first, second)]
    expected = ([f"d{n:02d}@example.org" for n in range(30)] + ["b@example.org"]
                + [f"f{n:02d}@example.org" for n in range(30)])
    assert shown == [expected[:50], expected[50:]]
    assert "page=2" in first and "page=1" in second  # the pager both ways
    assert '<td class="number">3</td><td class="mono">451 n3</td>' in first  # attempts and the SMTP reply
    assert first.count("badge state-deferred") == 30 and "différé" in first
    english = client.get(f"/admin/messages/{message.id}?page=2&lang=en").get_data(as_text=True)
    assert english.count("badge state-failed") == 11 and ">failed</span>" in english and "échec" not in english
