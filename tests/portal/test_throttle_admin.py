"""Issue 15: the throttling rules in the administration, through the real app: every staff member sees
them, only federation administrators change them, hostile and careless input is refused."""

from __future__ import annotations

import json

import pytest

from engine.audit import AuditEvent
from engine.outbound import throttle
from engine.outbound.models import ThrottleRule
from tests.portal.test_admin import app, federal, logged_in, regional, token_of  # noqa: F401 (fixtures)


def _rule(name: str) -> ThrottleRule:
    return ThrottleRule.get(ThrottleRule.name == name)


def _form(rule: ThrottleRule, token: str, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {"csrf_token": token, "label": rule.label, "domains": rule.domains,
                               "mx_patterns": rule.mx_patterns}
    for field in ("per_minute", "per_hour", "per_day", "connections", "per_connection"):
        value = getattr(rule, field)
        data[field] = "" if value is None else str(value)
    data.update(changes)
    return data


def test_issue_15_staff_see_the_rules_and_their_pace(regional) -> None:  # noqa: F811
    page = regional.get("/admin/throttle")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for label in ("Orange / Wanadoo", "Gmail / Google", "Outlook / Hotmail / Live", "Autres domaines"):
        assert label in text
    assert "/admin/throttle/" not in text  # no edit link for regional staff
    orange = _rule("orange")
    assert regional.get(f"/admin/throttle/{orange.id}").status_code == 403
    token = token_of(regional, "/admin/domains")
    refused = regional.post(f"/admin/throttle/{orange.id}", data=_form(orange, token, per_minute="5000"))
    assert refused.status_code == 403 and _rule("orange").per_minute == orange.per_minute


def test_issue_15_a_federation_administrator_edits_a_rule_and_the_engine_uses_it(federal) -> None:  # noqa: F811
    orange = _rule("orange")
    page = federal.get("/admin/throttle")
    assert f"/admin/throttle/{orange.id}" in page.get_data(as_text=True)
    token = token_of(federal, f"/admin/throttle/{orange.id}")
    response = federal.post(f"/admin/throttle/{orange.id}", data=_form(
        orange, token, domains="orange.fr\nWanadoo.fr\n\nclub-orange.example\n", per_minute="30", per_hour="",
        connections="1"))
    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/throttle")
    saved = _rule("orange")
    assert saved.domain_list == ["orange.fr", "wanadoo.fr", "club-orange.example"]
    assert (saved.per_minute, saved.per_hour, saved.connections) == (30, None, 1)
    [event] = AuditEvent.select().where(AuditEvent.action == "throttle.updated")
    assert json.loads(event.detail)["changed"]["per_minute"] == [60, 30]
    group = throttle.load_rules().group("plongeur@club-orange.example")
    assert (group.key, group.per_minute, group.connections) == ("orange", 30, 1)


@pytest.mark.parametrize(("changes", "message"), [
    ({"domains": "orange.fr\ngmail.com"}, "appartient déjà au groupe « Gmail / Google »"),
    ({"domains": "orange.fr\r\nBcc: victim@example.org"}, "Domaine invalide"),
    ({"domains": "=HYPERLINK(\"http://evil\")"}, "Domaine invalide"),
    ({"mx_patterns": "*.orange.fr\nsmtp in.example"}, "Serveur MX invalide"),
    ({"per_minute": "0"}, "Le nombre doit être compris entre 1 et"),
    ({"per_minute": "-5"}, "Le nombre doit être compris entre 1 et"),
    ({"per_minute": "beaucoup"}, "est pas un entier valide"),
    ({"label": ""}, "Ce champ est requis"),
])
def test_issue_15_hostile_and_careless_rule_input_is_refused(federal, changes, message) -> None:  # noqa: F811
    orange = _rule("orange")
    token = token_of(federal, f"/admin/throttle/{orange.id}")
    page = federal.post(f"/admin/throttle/{orange.id}", data=_form(orange, token, **changes))
    assert page.status_code == 200 and message in page.get_data(as_text=True)
    unchanged = _rule("orange")
    assert (unchanged.domains, unchanged.per_minute, unchanged.label) == (orange.domains, orange.per_minute,
                                                                           orange.label)


def test_issue_15_the_default_rule_lists_no_domain_and_csrf_is_required(federal) -> None:  # noqa: F811
    default = _rule("default")
    token = token_of(federal, f"/admin/throttle/{default.id}")
    page = federal.post(f"/admin/throttle/{default.id}", data=_form(default, token, domains="example.org"))
    assert "en liste aucun" in page.get_data(as_text=True) and _rule("default").domains == ""
    assert federal.post(f"/admin/throttle/{default.id}", data=_form(default, "", per_minute="10")).status_code == 400
    assert _rule("default").per_minute is None
    assert federal.get("/admin/throttle/99999").status_code == 404


def test_issue_15_anonymous_visitors_are_sent_to_the_login(app) -> None:  # noqa: F811
    client = app.test_client()
    response = client.get("/admin/throttle")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
