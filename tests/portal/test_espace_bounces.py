"""Mon espace when the member's address bounces: the warning beside the address with the pencil, the test message
and its link, re-enabling by a new confirmed address, and hostile uses of the probe (another member, a changed
address, a forged or expired link, a flood of test messages)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from engine import clock
from engine.bounces import member as bounce_member
from engine.bounces import scoring
from engine.bounces.classify import Classification, Kind
from engine.bounces.models import Bounce
from engine.db import write_transaction
from engine.lists.resolve import resolve
from engine.outbound.mail import read_captured
from tests.portal import test_espace
from tests.portal.test_espace import csrf, link, log_in, make_client, post

elodie = test_espace.elodie  # the fixture: a member on a role-based list

WARNING = "Vos messages ne sont plus distribués : votre adresse renvoie des erreurs."
T0 = datetime(2026, 11, 23, 13, 0)
HARD = Classification(Kind.HARD, "5.1.1", ("elodie@example.org",), "550 5.1.1 <elodie@example.org>: User unknown")



def disable(settings, address: str = "elodie@example.org") -> None:  # type: ignore[no-untyped-def]
    """Five days of hard bounces, as engine/bounces/service.py counts them."""
    with clock.frozen(T0) as advance:
        for _ in range(5):
            with write_transaction():
                counted = scoring.count(settings, address, HARD, 5.0, clock.now())
            advance(timedelta(days=1))
    assert counted.disabled_now


def page(client) -> str:  # type: ignore[no-untyped-def]
    return client.get("/espace/").get_data(as_text=True)


def test_no_warning_while_the_address_works(settings, elodie) -> None:  # type: ignore[no-untyped-def]
    member, _ml = elodie
    client = make_client(settings)
    log_in(client, member)
    with write_transaction():
        scoring.count(settings, "elodie@example.org", HARD, 5.0, clock.now())  # one bounce: a score, no more
    assert WARNING not in page(client)


def test_the_warning_sits_beside_the_address_with_the_pencil(settings, elodie) -> None:  # type: ignore[no-untyped-def]
    member, ml = elodie
    disable(settings)
    client = make_client(settings)
    log_in(client, member)
    html = page(client)
    assert WARNING in html and "User unknown" in html
    section = html[html.index('id="adresse-titre"'):html.index('id="listes-titre"')]
    assert section.index("adresse-actuelle") < section.index("Modifier l’adresse e-mail") < section.index(WARNING)
    assert "M’envoyer un message de test" in section
    assert list(resolve(ml)) == []  # and the lists do skip it
    english = client.get("/espace/?lang=en").get_data(as_text=True)
    assert "Your messages are no longer delivered: your address returns errors." in english


def test_a_new_confirmed_address_is_used_at_once_and_the_warning_goes(settings, elodie) -> None:  # type: ignore[no-untyped-def]
    member, ml = elodie
    disable(settings)
    client = make_client(settings)
    log_in(client, member)
    response = post(client, "/espace/adresse", "/espace/adresse", email="elodie.m@example.net")
    assert response.status_code == 302
    confirm = link(settings, "elodie.m@example.net")
    assert client.post(confirm, data={"csrf_token": csrf(client, confirm)}).status_code == 302  # delay 0: applied
    html = page(client)
    assert WARNING not in html and "elodie.m@example.net" in html
    assert [r.address for batch in resolve(ml) for r in batch] == ["elodie.m@example.net"]
    assert Bounce.get(Bounce.email_key == "elodie@example.org").disabled_until is not None  # the old one stays off


def test_an_address_confirmed_after_it_was_disabled_is_cleared_by_the_job(settings, elodie) -> None:  # type: ignore[no-untyped-def]
    member, ml = elodie
    disable(settings, "elodie.m@example.net")  # an old address of hers that bounced, long ago
    client = make_client(settings)
    log_in(client, member)
    post(client, "/espace/adresse", "/espace/adresse", email="Elodie.M@example.net")
    confirm = link(settings, "Elodie.M@example.net")
    client.post(confirm, data={"csrf_token": csrf(client, confirm)})
    assert WARNING in page(client)  # until the job runs
    assert bounce_member.clear_confirmed_addresses() == 1
    assert WARNING not in page(client)
    assert [r.address for batch in resolve(ml) for r in batch] == ["Elodie.M@example.net"]
    assert bounce_member.clear_confirmed_addresses() == 0


def test_the_test_message_link_re_enables_the_address(settings, elodie) -> None:  # type: ignore[no-untyped-def]
    member, ml = elodie
    disable(settings)
    client = make_client(settings)
    log_in(client, member)
    response = post(client, "/espace/adresse/test")
    assert response.status_code == 302
    [probe] = [m for m in read_captured(settings.capture_dir) if m["To"] == "elodie@example.org"]
    assert probe["Auto-Submitted"] == "auto-generated" and "Message de test" in str(probe["Subject"])
    path = link(settings, "elodie@example.org")
    anonymous = make_client(settings)
    assert "Recevoir à nouveau les messages" in anonymous.get(path).get_data(as_text=True)
    assert WARNING in page(client)  # a GET changes nothing: mail scanners follow links
    done = anonymous.post(path, data={"csrf_token": csrf(anonymous, path)})
    assert done.status_code == 200 and "elodie@example.org" in done.get_data(as_text=True)
    assert WARNING not in page(client)
    assert [r.address for batch in resolve(ml) for r in batch] == ["elodie@example.org"]


def test_test_messages_are_not_a_way_to_flood_an_address(settings, elodie) -> None:  # type: ignore[no-untyped-def]
    member, _ml = elodie
    disable(settings)
    client = make_client(settings)
    log_in(client, member)
    for _ in range(4):
        post(client, "/espace/adresse/test")
    again = client.post("/espace/adresse/test", data={"csrf_token": csrf(client, "/espace/")}, follow_redirects=True)
    assert "Un message de test est déjà parti" in again.get_data(as_text=True)
    assert len(read_captured(settings.capture_dir)) == 1
    with clock.frozen(clock.now() + bounce_member.PROBE_INTERVAL + timedelta(seconds=1)):
        post(client, "/espace/adresse/test")
    assert len(read_captured(settings.capture_dir)) == 2
    assert post(make_client(settings), "/espace/adresse/test", "/login").status_code == 302  # anonymous: to login
    assert len(read_captured(settings.capture_dir)) == 2


def test_probe_links_that_cannot_act(settings, elodie) -> None:  # type: ignore[no-untyped-def]
    member, _ml = elodie
    disable(settings)
    client = make_client(settings)
    token_path = f"/espace/adresse/verification/{bounce_member.probe_url(settings, member).rsplit('/', 1)[1]}"

    def try_link(path: str) -> int:
        return int(client.post(path, data={"csrf_token": csrf(client, path)}).status_code)

    assert try_link(token_path[:-3] + "abc") == 404  # forged
    other_key = dataclasses.replace(settings, secret_key="another-secret-key-for-this-test")
    forged = bounce_member.probe_url(other_key, member).rsplit("/", 1)[1]
    assert try_link(f"/espace/adresse/verification/{forged}") == 404
    with clock.frozen(clock.now() + bounce_member.PROBE_MAX_AGE + timedelta(hours=1)):
        assert try_link(token_path) == 410  # expired
    member.set_email("elodie.autre@example.org")
    member.save()
    assert try_link(token_path) == 409  # her address changed since: the link names the old one
    assert Bounce.get(Bounce.email_key == "elodie@example.org").disabled_until is not None
    member.set_email("elodie@example.org")
    member.save()
    assert client.post(token_path).status_code == 400  # no CSRF token: refused, nothing done
    assert Bounce.get(Bounce.email_key == "elodie@example.org").disabled_until is not None
