"""Every route of the portal's URL map, checked against expectations kept as data (issue 11, "Done when").

For each rule and each of its methods: an anonymous visitor is refused unless the endpoint is on the explicit
public allow-list; every state-changing method demands the CSRF token (the documented exceptions are listed,
each with what protects it instead); a member without staff rights is refused on every staff route (every route
neither public nor on the member allow-list, whatever its blueprint), and a member route naming an object
refuses one that is not theirs; a regional staff member (Provence) is refused everything outside Provence. A route added later is checked by default (it
is neither public nor exempt), and a staff route taking an object it names in the URL must say here how to
reach an object outside the region: a new route without a guard fails this test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from engine import clock, demo
from engine.lists.models import Domain, MailingList, OptOut
from engine.outbound import mail
from engine.outbound.models import ThrottleRule
from engine.posting.models import Message, MessageState
from tests.security.conftest import token_of

# Anonymous visitors may use these, and only these (why, for each).
PUBLIC = {
    "main.index": "the home page",
    "health.healthz": "the load balancer's and monitoring's health check (JSON: database and engine heartbeat)",
    "static": "the stylesheet and scripts",
    "auth.login": "logging in", "auth.forgot_password": "asking for a reset link", "auth.activate": "idem",
    "auth.reset_password": "the mailed link is the proof",
    "auth.home": "only redirects to Mon espace, which asks to log in",
    "espace.confirm": "the link mailed to the new address", "espace.cancel": "the link mailed to the old one",
    "espace.probe": "the signed test link mailed to an address that bounced",
    "unsubscribe.confirm_page": "the link in every copy", "unsubscribe.unsubscribe": "idem (RFC 8058)",
    "unsubscribe.rejoin": "idem",
    "moderation.by_link": "the signed link mailed to moderators",
    "post_confirm.by_link": "the signed link mailed to the author of a post",
}
# State-changing methods that do not take Flask-WTF's CSRF token, and what protects them instead.
CSRF_EXEMPT = {
    "unsubscribe.unsubscribe": "RFC 8058 one-click POST (no cookie); the page's button carries its own form token",
    "unsubscribe.rejoin": "the page's button carries its own form token, checked by the view",
}
# A logged-in member without staff rights may use these (their own data only: no member id in a URL or form).
# Every endpoint neither public nor here is a staff route: members are refused it, whatever its blueprint.
MEMBER = {
    "espace.index": "Mon espace", "espace.email": "the pencil", "espace.cancel_pending": "their own pending change",
    "espace.send_probe": "a test mail to their own address", "auth.logout": "logging out",
    "espace.leave": "a list they are on (NOT_THEIRS)", "espace.rejoin": "a list they left (NOT_THEIRS)",
}
# Member routes that name an object in their URL: one the member may not act on, and the answer expected.
NOT_THEIRS = {"espace.leave": "foreign_list", "espace.rejoin": "foreign_list"}
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Outside:
    """How a Provence staff member would reach something outside Provence through one staff route."""

    args: dict[str, str] = field(default_factory=dict)  # URL argument -> name of an object outside Provence
    form: dict[str, str] = field(default_factory=dict)  # form field -> value (object names are resolved)
    refused: tuple[int, ...] = (403, 404)  # 200: the form shown again with its error (the test checks nothing changed)


OUTSIDE = {
    "admin.switch_domain": Outside({"domain_id": "national_domain"}, {"enabled": "0"}),
    "admin.list_settings": Outside({"list_id": "national_list"}, {"name": "Pris", "reply_to": "author"}),
    "admin.list_criteria": Outside({"list_id": "national_list"}),
    "admin.criteria_preview": Outside({"list_id": "national_list"}),
    "admin.criteria_exact": Outside({"list_id": "national_list"}),
    "admin.list_optouts": Outside({"list_id": "national_list"}),
    "admin.list_optouts_csv": Outside({"list_id": "national_list"}),
    "admin.list_posting": Outside({"list_id": "national_list"}, {"policy": "anyone", "hold": "hold"}),
    "admin.list_recipients": Outside({"list_id": "national_list"}),
    "admin.list_recipients_csv": Outside({"list_id": "national_list"}),
    "admin.list_subscribers": Outside({"list_id": "national_list"}, {"subscribers": "pirate@example.net"}),
    "admin.delete_lists": Outside(form={"list_ids": "national_list", "confirm": "yes"}),
    "admin.create_list": Outside(form={"structure": "FFESSM", "local_part": "intrus", "domain": "national_domain",
                                       "kind": "static", "name": "Intrus"}, refused=(200, 403)),
    "messages.detail": Outside({"message_id": "national_message"}),
    "messages.decide": Outside({"message_id": "national_message"}, {"action": "approve"}),
    "messages.progress": Outside({"message_id": "national_message"}),
    "messages.captured_message": Outside({"key": "national_copy"}),
    "messages.list_stats": Outside({"list_id": "national_list"}),
    "messages.set_threshold": Outside({"list_id": "national_list"}, {"threshold": "1"}),
    "messages.reenable": Outside({"list_id": "national_list"}, {"address": "a@example.org"}),
    # Provider groups are the federation's, not a region's: only its administrators change them.
    "admin.throttle_edit": Outside({"rule_id": "throttle_rule"}, {"label": "Pris", "per_minute": "1"}),
}
# Staff routes that name no object: each shows or takes only what is in scope (and where that is tested).
UNNAMED = {
    "admin.index": "lists in scope only (tests/portal/test_admin.py)",
    "admin.domains": "usable domains only (idem)",
    "admin.import_members": "rows outside scope refused (tests/security/test_finding01_import_takeover.py)",
    "admin.audit_log": "events in scope only (tests/portal/test_admin.py)",
    "messages.index": "messages of lists in scope (tests/portal/test_messages.py)",
    "messages.captured": "copies of lists in scope (tests/security/test_finding14_hardening.py)",
    "admin.throttle": "the provider groups, shown to all staff, edited by federation administrators only "
                      "(tests/portal/test_throttle_admin.py)",
}


@dataclass
class World:
    app: Flask
    objects: dict[str, str]
    rules: list[Rule]


@pytest.fixture
def world(app: Flask, settings) -> World:  # type: ignore[no-untyped-def]
    national = MailingList.get(MailingList.local_part == "licencies.national")
    raw = b"From: a@example.org\r\nSubject: Lettre\r\n\r\nBonjour\r\n"
    message = Message.create(mailing_list=national, content=raw, size=len(raw), state=MessageState.HELD,
                             author="a@example.org", received_at=clock.now())
    key = mail.capture(settings.capture_dir, b"X-Loop: " + national.address.encode() + b"\r\n" + raw)
    objects = {"national_list": str(national.id), "national_message": str(message.id), "national_copy": key,
               "national_domain": str(national.domain_id), "token": "not-a-token", "filename": "palanquee.css",
               "throttle_rule": str(ThrottleRule.select(ThrottleRule.id).order_by(ThrottleRule.id).scalar())}
    foreign = MailingList.get(MailingList.local_part == "bureau.codep13")  # Élodie is not on it, nor has left it
    objects["foreign_list"] = str(foreign.id)
    rules = sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))
    return World(app, objects, rules)


def is_staff_route(endpoint: str) -> bool:
    return endpoint not in PUBLIC and endpoint not in MEMBER


def path_of(world: World, rule: Rule, names: dict[str, str] | None = None) -> str:
    """The rule's URL with every argument filled: from ``names`` (object names), else a default object."""
    values = {}
    for argument in rule.arguments:
        name = (names or {}).get(argument) or {"list_id": "national_list", "message_id": "national_message",
                                               "domain_id": "national_domain", "key": "national_copy",
                                               "rule_id": "throttle_rule"}.get(argument)
        assert name or argument in world.objects, f"{rule.rule}: tell the route test how to fill <{argument}>"
        values[argument] = world.objects[name or argument]
    return world.app.url_map.bind("localhost").build(rule.endpoint, values)


def methods(rule: Rule) -> Iterator[str]:
    yield from sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def refused_anonymous(status: int, location: str) -> bool:
    return status in (401, 403) or (status == 302 and location.startswith("/login"))


def test_every_route_refuses_anonymous_visitors_unless_it_is_public(world: World):
    client = world.app.test_client()
    token = token_of(client, "/login")  # a valid token: the login guard, not the CSRF check, must answer
    checked = []
    for rule in world.rules:
        if rule.endpoint in PUBLIC:
            continue
        for method in methods(rule):
            response = client.open(path_of(world, rule), method=method,
                                   data={"csrf_token": token} if method in STATE_CHANGING else None)
            assert refused_anonymous(response.status_code, response.headers.get("Location", "")), \
                f"{method} {rule.rule} ({rule.endpoint}) answers {response.status_code} to an anonymous visitor"
            checked.append(rule.endpoint)
    assert "admin.index" in checked and "espace.index" in checked and "messages.decide" in checked
    assert not set(PUBLIC) - {r.endpoint for r in world.rules}, "the allow-list names routes that are gone"


def test_every_state_changing_method_demands_the_csrf_token(world: World, federal: FlaskClient):
    """As a federation administrator (every guard open), a form without its token changes nothing: 400."""
    before = OptOut.select().count()
    for rule in world.rules:
        for method in methods(rule):
            if method not in STATE_CHANGING:
                continue
            response = federal.open(path_of(world, rule), method=method, data={"name": "x"})
            if rule.endpoint in CSRF_EXEMPT:
                assert response.status_code != 400 or OptOut.select().count() == before
                continue
            assert response.status_code == 400, f"{method} {rule.rule} accepts a form without its CSRF token"
    assert OptOut.select().count() == before
    assert not set(CSRF_EXEMPT) - {r.endpoint for r in world.rules}


def test_members_without_staff_rights_are_refused_every_staff_route(world: World, member_client: FlaskClient):
    """Every route neither public nor on the member list is a staff route, whatever blueprint it is in."""
    token = token_of(member_client, "/espace/")
    assert not set(MEMBER) - {r.endpoint for r in world.rules}, "the member list names routes that are gone"
    assert {"admin.index", "messages.decide", "admin.throttle_edit"} <= {
        r.endpoint for r in world.rules if is_staff_route(r.endpoint)}
    for rule in world.rules:
        if not is_staff_route(rule.endpoint):
            continue
        for method in methods(rule):
            response = member_client.open(path_of(world, rule), method=method,
                                          data={"csrf_token": token} if method in STATE_CHANGING else None)
            assert response.status_code == 403, f"{method} {rule.rule}: {response.status_code} for a member"


def test_regional_staff_reach_nothing_outside_their_region(world: World, regional: FlaskClient):
    token = token_of(regional, "/admin/")
    national = MailingList.get(MailingList.local_part == "licencies.national")
    staff_endpoints = {r.endpoint for r in world.rules if is_staff_route(r.endpoint)}
    unknown = staff_endpoints - set(OUTSIDE) - set(UNNAMED)
    assert not unknown, f"say in OUTSIDE how these staff routes could reach another region, or why not: {unknown}"
    for rule in world.rules:
        if rule.endpoint in UNNAMED:
            assert not rule.arguments, f"{rule.rule} names an object: it belongs in OUTSIDE"
        probe = OUTSIDE.get(rule.endpoint)
        if probe is None:
            continue
        form = {field: world.objects.get(value, value) for field, value in probe.form.items()}
        for method in methods(rule):
            if not probe.args and method not in STATE_CHANGING:
                continue  # the blank form names nothing yet
            data = {"csrf_token": token, **form} if method in STATE_CHANGING else None
            response = regional.open(path_of(world, rule, probe.args), method=method, data=data)
            assert response.status_code in probe.refused, \
                f"{method} {rule.rule} ({rule.endpoint}): {response.status_code} for another region's object"
    national = MailingList.get_by_id(national.id)
    assert national.deleted_at is None and national.name != "Pris" and national.post_policy != "anyone"
    assert not MailingList.select().where(MailingList.local_part == "intrus").exists()
    assert Domain.get_by_id(national.domain_id).lists_enabled
    assert Message.get_by_id(int(world.objects["national_message"])).state == MessageState.HELD
    assert ThrottleRule.get_by_id(int(world.objects["throttle_rule"])).label != "Pris"
    assert national.bounce_threshold is None  # the list's own bounce threshold untouched


def test_member_routes_naming_an_object_refuse_one_that_is_not_theirs(world: World, member_client: FlaskClient):
    token = token_of(member_client, "/espace/")
    for rule in world.rules:
        if rule.endpoint not in MEMBER or not rule.arguments:
            continue
        assert rule.endpoint in NOT_THEIRS, f"{rule.rule} names an object: say in NOT_THEIRS which one is not theirs"
        path = path_of(world, rule, dict.fromkeys(rule.arguments, NOT_THEIRS[rule.endpoint]))
        for method in methods(rule):
            response = member_client.open(path, method=method,
                                          data={"csrf_token": token} if method in STATE_CHANGING else None)
            assert response.status_code in (403, 404), f"{method} {rule.rule}: {response.status_code}"
    assert not OptOut.select().exists()


def test_the_one_click_exception_is_exactly_what_rfc_8058_needs(world: World, settings):
    """Without the one-click body and without the page's form token, the unsubscribe POST changes nothing."""
    from engine import tokens
    from engine.directory.models import Member

    elodie = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    board = MailingList.get(MailingList.local_part == "comite_directeur.comite")
    link = tokens.unsubscribe_url(settings, board.id, [elodie.id]).replace(settings.base_url, "")
    client = world.app.test_client()
    assert client.post(link, data={}).status_code == 200 and not OptOut.select().exists()
    assert client.post(link + "/reabonnement", data={}).status_code == 200 and not OptOut.select().exists()
    one_click = client.post(link, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200 and OptOut.select().where(OptOut.member == elodie.id).exists()
