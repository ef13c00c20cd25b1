"""What links in mail may do, through the real app: the moderation link decides only on a POST with its
CSRF token (never on a GET, which mail scanners make); the "this was not me" link keeps working after the
confirmation link has expired, until the new address takes effect; the RFC 8058 one-click POST acts on
exactly ``List-Unsubscribe=One-Click`` and on nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine import clock
from engine.directory import email_change
from engine.directory.models import EmailChange, Member
from engine.lists.models import OptOut
from engine.posting import moderation
from engine.posting.models import Message, MessageState
from portal import create_app
from tests.portal.test_espace import T0, delayed, elodie, link, log_in, make_client, post  # noqa: F401 (fixtures)
from tests.portal.test_espace import csrf as csrf_of
from tests.portal.test_messages import _client, world  # noqa: F401 (fixture)
from tests.portal.test_unsubscribe import addresses, family, path_for  # noqa: F401 (fixture)


def test_the_moderation_link_decides_only_on_a_post_with_its_csrf_token(world, settings) -> None:  # noqa: F811
    held = world["held"]
    url = moderation.moderation_url(settings, held).replace(settings.base_url, "")
    scanner, moderator = _client(world), _client(world)  # neither logged in: the link is the credential
    for query in ("", "?decision=approve", "?decision=reject"):
        assert scanner.get(url + query).status_code == 200
        assert scanner.head(url + query).status_code == 200
    assert Message.get_by_id(held.id).state == MessageState.HELD
    other_session = csrf_of(scanner, url)  # a genuine token, of another browser's session
    for data in ({"action": "approve"}, {"action": "approve", "csrf_token": "forged"},
                 {"action": "approve", "csrf_token": other_session}):
        assert moderator.post(url, data=data).status_code == 400
        assert Message.get_by_id(held.id).state == MessageState.HELD
    response = moderator.post(url, data={"action": "approve", "csrf_token": csrf_of(moderator, url)})
    assert response.status_code == 302 and Message.get_by_id(held.id).state == MessageState.ACCEPTED


def test_this_was_not_me_works_between_the_confirmation_links_expiry_and_the_effective_date(
        delayed, elodie) -> None:  # noqa: F811
    member, _ml = elodie
    client, old_mailbox = make_client(delayed), make_client(delayed)
    assert delayed.email_change_max_age < delayed.propagation_delay  # 48 h, then 72 h after confirmation
    with clock.frozen(T0) as advance:
        log_in(client, member)
        post(client, "/espace/adresse", "/espace/adresse", email="thief@example.org")
        confirm_path, cancel_path = link(delayed, "thief@example.org"), link(delayed, "elodie@example.org")
        advance(timedelta(hours=1))
        post(client, confirm_path, confirm_path)
        change = EmailChange.get()
        assert change.effective_at == T0 + timedelta(hours=1) + delayed.propagation_delay
        advance(delayed.email_change_max_age + timedelta(hours=1))  # T0 + 50 h: a confirmation link is dead now
        assert client.get(confirm_path).status_code in (409, 410)
        assert clock.now() < change.effective_at
        page = old_mailbox.get(cancel_path)
        assert page.status_code == 200 and "Ce n’était pas moi" in page.get_data(as_text=True)
        assert "Changement annulé" in post(old_mailbox, cancel_path, cancel_path).get_data(as_text=True)
    assert EmailChange.get_by_id(change.id).cancelled_at is not None
    assert email_change.apply_due_changes(T0 + timedelta(days=30)) == 0
    assert Member.get_by_id(member.id).email == "elodie@example.org"


ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("body, content_type", [
    (ONE_CLICK, "application/x-www-form-urlencoded"),
    ({"List-Unsubscribe": "One-Click"}, "multipart/form-data"),  # RFC 8058 §3.1 allows either encoding
])
def test_one_click_post_with_exactly_the_rfc_8058_body_unsubscribes(settings, family, body, content_type) -> None:  # noqa: F811
    ml, _a, _b, c = family
    client = create_app(settings, config={"TESTING": True}).test_client(use_cookies=False)
    response = client.post(path_for(settings, ml, c.id), data=body, content_type=content_type)
    assert response.status_code == 200 and [o.member_id for o in OptOut.select()] == [c.id]


@pytest.mark.parametrize("body, query", [
    ("", ""), ("List-Unsubscribe=one-click", ""), ("list-unsubscribe=One-Click", ""),
    ("List-Unsubscribe=Yes", ""), ("List-Unsubscribe=One-Click-Now", ""), ("List-Unsubscribe=", ""),
    ("Unsubscribe=One-Click", ""), ("", "?List-Unsubscribe=One-Click"),  # in the URL, not the body
])
def test_any_other_post_without_the_pages_token_unsubscribes_nobody(settings, family, body, query) -> None:  # noqa: F811
    ml, _a, _b, c = family
    client = create_app(settings, config={"TESTING": True}).test_client(use_cookies=False)
    response = client.post(path_for(settings, ml, c.id) + query, data=body,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code in (200, 400)  # the confirmation page again, or refused: never the one-click answer
    assert response.get_data(as_text=True) != "unsubscribed\n"
    assert OptOut.select().count() == 0 and addresses(ml) == ["famille@example.org", "seul@example.org"]
