"""Delivery statistics on the staff pages: the lists page's columns, the messages pages, one list's statistics with
its failing addresses, its bounce threshold and re-enabling an address; other structures' staff kept out."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from engine import clock
from engine.bounces import scoring
from engine.bounces.classify import Classification, Kind
from engine.bounces.models import Bounce, BounceEvent
from engine.db import write_transaction
from engine.lists.models import MailingList
from engine.lists.optouts import leave
from engine.outbound.models import Delivery
from tests.portal import test_messages
from tests.portal.test_messages import _client, _csrf

world = test_messages.world  # the fixture: two regions' lists and messages, a staff member, a plain member

HARD = Classification(Kind.HARD, "5.1.1", (), "550 5.1.1 No such user")



@pytest.fixture
def bounced(world, settings):  # type: ignore[no-untyped-def]
    """The 'sending' message's copy to a@ came back (hard), five days running: a@ is disabled."""
    message = world["sending"]
    copy = Delivery.get(Delivery.address == "a@example.org")
    start = clock.now()
    for day in range(5):
        with clock.frozen(start + timedelta(days=day)), write_transaction():
            scoring.count(settings, "a@example.org", HARD, 5.0, clock.now())
            BounceEvent.create(at=clock.now(), email_key="a@example.org", mailing_list=message.mailing_list_id,
                               message=message, delivery_id=copy.id, source="dsn", kind="hard", status="5.1.1",
                               weight=1.0)
    leave(message.mailing_list, email_key="z@example.org", source="one-click")
    return world


def test_the_lists_page_shows_delivered_bounced_and_unsubscribed(bounced) -> None:  # type: ignore[no-untyped-def]
    client = _client(bounced, bounced["staff"])
    page = client.get("/admin/").get_data(as_text=True)
    assert "Remis (30 j)" in page and "Rebonds" in page and "Désabonnements" in page
    row = page[page.index(">cd@listes.example.fr<"):]
    row = row[: row.index("</tr>")]
    cells = re.findall(r'<td class="number">(.*?)</td>', row, re.S)
    # 3 copies, 1 delivered (33 %), 1 bounced (100 % of the delivered), 1 unsubscribe
    visible = [re.sub(r'<span class="visually-hidden">.*?</span>|<[^>]+>', " ", cell).split() for cell in cells[1:]]
    assert visible == [["1", "(33,3", "%)"], ["1", "(100", "%)"], ["1", "(100", "%)"]]


def test_the_messages_pages_show_the_figures(bounced) -> None:  # type: ignore[no-untyped-def]
    client = _client(bounced, bounced["staff"])
    index = client.get("/admin/messages/").get_data(as_text=True)
    assert "Rebonds" in index and "Désabonnements" in index
    detail = client.get(f"/admin/messages/{bounced['sending'].id}").get_data(as_text=True)
    figures = detail[detail.index('id="figures"'):]
    assert re.search(r'data-figure="bounced">1 <span class="muted">\(100\xa0%\)', figures)
    assert re.search(r'data-figure="unsubscribed">1 ', figures)


def test_complaints_are_shown_apart_from_bounces_and_unsubscribes(bounced) -> None:  # type: ignore[no-untyped-def]
    # Two reports (ARF) about the same copy count one complaint; neither is a bounce nor an unsubscribe.
    message = bounced["sending"]
    for _ in range(2):
        BounceEvent.create(at=clock.now(), email_key="a@example.org", mailing_list=message.mailing_list_id,
                           message=message, source="arf", kind="complaint", diagnostic="abuse")
    client = _client(bounced, bounced["staff"])
    detail = client.get(f"/admin/messages/{message.id}").get_data(as_text=True)
    figures = detail[detail.index('id="figures"'):]
    assert re.search(r'data-figure="complained">1 <span class="muted">\(100\xa0%\)', figures)
    assert re.search(r'data-figure="bounced">1 ', figures) and re.search(r'data-figure="unsubscribed">1 ', figures)
    page = client.get(f"/admin/messages/listes/{message.mailing_list_id}").get_data(as_text=True)
    assert "Plaintes (signalées comme spam)" in page and re.search(r'data-figure="complained">1 ', page)


def test_one_lists_statistics_and_failing_addresses(bounced) -> None:  # type: ignore[no-untyped-def]
    client = _client(bounced, bounced["staff"])
    ml = bounced["sending"].mailing_list
    page = client.get(f"/admin/messages/listes/{ml.id}").get_data(as_text=True)
    assert "a@example.org" in page and "désactivée" in page and "550 5.1.1 No such user" in page
    assert "Sortie sending" in page
    response = client.post(f"/admin/messages/listes/{ml.id}/reactiver", data={
        "csrf_token": _csrf(client, f"/admin/messages/listes/{ml.id}"), "address": "a@example.org"})
    assert response.status_code == 302
    row = Bounce.get(Bounce.email_key == "a@example.org")
    assert row.disabled_until is None and row.score == 0


def test_a_lists_threshold(bounced) -> None:  # type: ignore[no-untyped-def]
    client = _client(bounced, bounced["staff"])
    ml = bounced["sending"].mailing_list
    path = f"/admin/messages/listes/{ml.id}"

    def set_to(value: str) -> str:
        return client.post(path + "/seuil", data={"csrf_token": _csrf(client, path), "threshold": value},
                           follow_redirects=True).get_data(as_text=True)

    assert "Seuil enregistré" in set_to("3,5")
    assert MailingList.get_by_id(ml.id).bounce_threshold == 3.5
    for bad in ("0", "abc", "1e9", "-2", "nan"):
        assert "entre 1 et 100" in set_to(bad)
    assert MailingList.get_by_id(ml.id).bounce_threshold == 3.5
    set_to("")
    assert MailingList.get_by_id(ml.id).bounce_threshold is None


def test_other_structures_staff_and_members_are_kept_out(bounced) -> None:  # type: ignore[no-untyped-def]
    theirs = bounced["other"].mailing_list
    ours = bounced["sending"].mailing_list
    staff = _client(bounced, bounced["staff"])
    assert staff.get(f"/admin/messages/listes/{theirs.id}").status_code == 403
    assert staff.get("/admin/messages/listes/999999").status_code == 404
    response = staff.post(f"/admin/messages/listes/{theirs.id}/seuil", data={
        "csrf_token": _csrf(staff, f"/admin/messages/listes/{ours.id}"), "threshold": "2"})
    assert response.status_code == 403 and MailingList.get_by_id(theirs.id).bounce_threshold is None
    plain = _client(bounced, bounced["plain"])
    assert plain.get(f"/admin/messages/listes/{ours.id}").status_code == 403
    assert _client(bounced).get(f"/admin/messages/listes/{ours.id}").status_code == 302  # to the login page


def _score_cell(page: str, address: str) -> str:
    row = page[page.index(f'<td class="address">{address}</td>'):]
    row = row[: row.index("</tr>")]
    [cell] = re.findall(r'<td class="number">([^<]*)</td>', row)
    return cell


def test_a_stale_score_reads_as_zero_on_the_lists_page_and_stays_stored(bounced, settings) -> None:  # type: ignore[no-untyped-def]
    """docs/bounces.md: a score with no failure for PALANQUEE_BOUNCE_STALE_AFTER reads as zero (no job)."""
    message, copy = bounced["sending"], Delivery.get(Delivery.address == "b@example.org")
    start = clock.now()
    for day in range(3):  # three hard bounces, one a day: watched, not disabled
        with clock.frozen(start + timedelta(days=day)), write_transaction():
            scoring.count(settings, "b@example.org", HARD, 5.0, clock.now())
            BounceEvent.create(at=clock.now(), email_key="b@example.org", mailing_list=message.mailing_list_id,
                               message=message, delivery_id=copy.id, source="dsn", kind="hard", status="5.1.1",
                               weight=1.0)
    path = f"/admin/messages/listes/{message.mailing_list_id}"
    last = start + timedelta(days=2)
    with clock.frozen(last + settings.bounce_stale_after - timedelta(minutes=1)):
        page = _client(bounced, bounced["staff"]).get(path).get_data(as_text=True)
    assert _score_cell(page, "b@example.org") == "3,0"  # not stale yet (French decimals)
    with clock.frozen(last + settings.bounce_stale_after + timedelta(minutes=1)):
        page = _client(bounced, bounced["staff"]).get(path).get_data(as_text=True)
    assert _score_cell(page, "b@example.org") == "0,0" and "surveillée" in page
    assert _score_cell(page, "a@example.org") == "5,0"  # a disabled address keeps its score for staff to read
    assert Bounce.get(Bounce.email_key == "b@example.org").score == 3.0  # the raw score is still stored
