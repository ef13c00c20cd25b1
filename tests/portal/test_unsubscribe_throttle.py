"""The public unsubscribe link limits failures per client address, never valid one-click POSTs
(DELIVERABILITY.md §9.5): forged tokens from one address end in 429; providers posting for many members pass."""

from __future__ import annotations

import pytest

from engine import clock
from engine.directory import throttle
from engine.directory.models import StructureKind
from engine.lists.models import OptOut, Subscription
from portal import create_app
from tests import factories as f
from tests.portal.test_unsubscribe import path_for

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
ATTACKER, GMAIL = "203.0.113.66", "209.85.220.41"


@pytest.fixture
def guests(db):
    """A plain list of 200 addresses typed by staff."""
    fed = f.structure("Fédération", StructureKind.FEDERATION)
    ml = f.mailing_list("invites", f.domain(structure=fed), name="Invités", kind="static")
    Subscription.insert_many([dict(mailing_list=ml.id, email=f"g{n}@example.org", email_key=f"g{n}@example.org",
                                   created_at=clock.now()) for n in range(200)]).execute()
    return ml


def client_from(settings, ip: str):  # type: ignore[no-untyped-def]
    client = create_app(settings, config={"TESTING": True}).test_client(use_cookies=False)
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def test_forged_posts_from_one_address_end_in_429_while_another_address_unsubscribes(settings, guests):
    attacker = client_from(settings, ATTACKER)
    good = path_for(settings, guests, email_key="g1@example.org")
    statuses = [attacker.post(good[:-6] + f"{n:06d}", data=ONE_CLICK).status_code for n in range(40)]
    limit = throttle.UNSUBSCRIBE_FAILURES.limit
    assert statuses == [404] * limit + [429] * (40 - limit)
    refused = attacker.post(good, data=ONE_CLICK)  # blocked before any token is read: no oracle for the attacker
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "600"
    assert attacker.get(good).status_code == 429
    assert OptOut.select().count() == 0
    provider = client_from(settings, GMAIL)
    assert provider.post(good, data=ONE_CLICK).status_code == 200
    assert [o.email_key for o in OptOut.select()] == ["g1@example.org"]


def test_two_hundred_valid_one_click_posts_from_one_address_all_pass(settings, guests):
    provider = client_from(settings, GMAIL)
    for n in range(200):
        response = provider.post(path_for(settings, guests, email_key=f"g{n}@example.org"), data=ONE_CLICK)
        assert response.status_code == 200, n
    assert OptOut.select().count() == 200


def test_wrong_bodies_and_bad_links_count_but_a_deleted_lists_genuine_token_does_not(settings, guests):
    client = client_from(settings, ATTACKER)
    good = path_for(settings, guests, email_key="g2@example.org")
    key = throttle.UNSUBSCRIBE_FAILURES.key(ATTACKER)
    assert client.post(good, data={"List-Unsubscribe": "Two-Clicks"}).status_code == 200  # the page again
    assert client.get("/u/garbage").status_code == 404
    assert client.post("/u/garbage/reabonnement", data={}).status_code == 404
    assert throttle.count(key, throttle.UNSUBSCRIBE_FAILURES) == 3
    gone = path_for(settings, type(guests)(id=999999), email_key="g2@example.org")
    assert client.post(gone, data=ONE_CLICK).status_code == 404
    assert client.get(gone).status_code == 404
    assert throttle.count(key, throttle.UNSUBSCRIBE_FAILURES) == 3
