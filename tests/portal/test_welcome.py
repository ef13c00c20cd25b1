"""The welcome notice of a plain list's new subscribers typed by staff (DELIVERABILITY.md §9.4), through the real
admin form (CSRF) and a recording SMTP sink standing in for the smarthost: who gets it, what it says, the leave link."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import pytest

from engine import demo
from engine.directory.models import RateEvent
from engine.lists import subscribers, welcome
from engine.lists.models import MailingList, OptOut
from engine.outbound.mail import read_captured
from portal import create_app
from tests.support.portal import csrf, demo_app, logged_in
from tests.support.sink import Sink, SinkHandler

EXISTING = "presse@ville-marseille.fr"  # already on invites.ag2026 in the demo federation


@pytest.fixture
def relay() -> Iterator[Sink]:
    sink = Sink(SinkHandler())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def app(settings, db, relay):
    return demo_app(dataclasses.replace(settings, smarthost=relay.url))


@pytest.fixture
def federal(app):
    return logged_in(app.test_client(), demo.ADMIN_LICENCE, demo.DEMO_PASSWORD)


def guests() -> MailingList:
    return MailingList.get(MailingList.local_part == "invites.ag2026")


def save(client, ml: MailingList, text: str) -> str:
    path = f"/admin/lists/{ml.id}/subscribers"
    return client.post(path, data={"csrf_token": csrf(client, path), "subscribers": text}).get_data(as_text=True)


def welcomes(relay: Sink) -> dict[str, object]:
    return {r.rcpt_tos[0]: r for r in relay.handler.received if "invites.ag2026" in r.message["Subject"]}


def test_new_addresses_are_welcomed_and_their_link_takes_them_off(federal, relay, settings):
    ml = guests()
    text = subscribers.subscribers_text(ml) + "\nNouveau.Venu@example.org\nadresse sans arobase\nautre@example.org"
    page = save(federal, ml, text)
    assert "ligne 1 : « adresse sans arobase » : adresse invalide" in page  # the bad line, with its number
    got = welcomes(relay)
    assert sorted(got) == ["Nouveau.Venu@example.org", "autre@example.org"]  # not the three already there
    received = got["autre@example.org"]
    mail = received.message
    assert received.mail_from == "invites.ag2026-bounces@listes.ffessm-demo.fr"  # bounces come back to the engine
    assert mail["Auto-Submitted"] == "auto-generated" and mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = mail.get_content()
    assert "Fédération" in body or "FFESSM" in body  # who added it: the structure, not the staff member
    assert demo.ADMIN_LICENCE not in body and "Invités de l’assemblée générale 2026" in body
    url = re.search(r"(http\S+/u/\S+)", body).group(1)
    assert mail["List-Unsubscribe"] == f"<{url}>"
    anonymous = create_app(settings, config={"TESTING": True}).test_client(use_cookies=False)
    response = anonymous.post(url.split(settings.base_url, 1)[1], data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert [o.email_key for o in OptOut.select().where(OptOut.mailing_list == ml)] == ["autre@example.org"]


def test_someone_who_left_is_not_welcomed_again_when_staff_add_them_back(federal, relay):
    ml = guests()
    base = subscribers.subscribers_text(ml)
    save(federal, ml, base + "\nparti@example.org")
    [first] = welcomes(relay).values()
    token = re.search(r"/u/(\S+)", first.message.get_content()).group(1)
    federal.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    save(federal, ml, base)  # staff remove the address...
    RateEvent.delete().execute()  # (days later: no daily limit holds it back)
    save(federal, ml, base + "\nparti@example.org")  # ...and type it again
    assert len(welcomes(relay)) == 1 and len(relay.handler.received) == 1


def test_a_paste_of_many_addresses_sends_only_the_daily_allowance(federal, relay, monkeypatch):
    monkeypatch.setattr(welcome, "PER_LIST_PER_DAY", 3)
    ml = guests()
    save(federal, ml, subscribers.subscribers_text(ml) + "".join(f"\nm{n}@example.org" for n in range(8)))
    assert subscribers.subscriber_count(ml) == 3 + 8  # every line is subscribed...
    assert len(welcomes(relay)) == 3  # ...but only the day's allowance is welcomed


def test_bulk_add_welcomes_and_role_lists_do_not(federal, relay, monkeypatch):
    monkeypatch.setattr(subscribers, "TEXTAREA_LIMIT", 2)
    ml = guests()
    path = f"/admin/lists/{ml.id}/subscribers"
    federal.post(path, data={"csrf_token": csrf(federal, path), "lines": f"{EXISTING}\nbulk@example.org",
                             "action": "add"})
    assert list(welcomes(relay)) == ["bulk@example.org"]
    board = MailingList.get(MailingList.local_part == "bureau.codep13")  # a role list: its extras get no welcome
    save(federal, board, "extra@example.org")
    assert [r.rcpt_tos for r in relay.handler.received] == [["bulk@example.org"]]


def test_without_a_smarthost_the_welcome_reaches_the_capture_in_french(settings, db):
    client = logged_in(demo_app(settings).test_client(), demo.ADMIN_LICENCE, demo.DEMO_PASSWORD)
    save(client, guests(), "solo@example.org")
    [mail] = read_captured(settings.capture_dir)
    assert mail["Subject"].startswith("Vous êtes inscrit(e) à la liste invites.ag2026@")
