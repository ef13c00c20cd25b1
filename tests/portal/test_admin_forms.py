"""Staff forms that guide and never lose work (issue 13): the structure picker and its field errors, bad lines
kept in the field after a creation, the domain selector's states and default, the confirmed switch-off, who is
told of a creation, the landing page of a role-based list, the role picker's groups."""

# ruff: noqa: F811  (the fixtures app, regional and federal come from test_admin)
from __future__ import annotations

import re

from engine import demo
from engine.audit import AuditEvent
from engine.lists import subscribers
from engine.lists.models import Domain, ListKind, MailingList
from engine.lists.resolve import count_recipients
from engine.outbound.mail import read_captured
from tests.portal.test_admin import app, federal, regional, the_list, token_of  # noqa: F401


def test_an_out_of_scope_structure_keeps_everything_typed(regional):
    typed = {"local_part": "sorties.idf", "name": "Sorties en Île-de-France", "structure": "CR-IDF", "kind": "static",
             "owner": demo.STAFF_LICENCE, "subscribers": "un@example.org\ndeux@example.org\ntrois@example.org",
             "notify": "y", "domain": Domain.get(Domain.name == demo.LIST_DOMAIN).id}
    response = regional.post("/admin/lists/new", data={"csrf_token": token_of(regional, "/admin/lists/new"), **typed})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Comité régional Île-de-France (CR-IDF) est hors de votre périmètre" in page
    assert re.search(r'id="structure"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="structure"', page)
    for value in ("sorties.idf", "Sorties en Île-de-France", "CR-IDF"):
        assert f'value="{value}"' in page
    assert "un@example.org\ndeux@example.org\ntrois@example.org</textarea>" in page
    assert 'name="notify" type="checkbox" value="y"' in page and "checked" in page
    assert not MailingList.select().where(MailingList.local_part == "sorties.idf").exists()


def test_the_picker_offers_only_manageable_structures_and_understands_names(regional):
    page = regional.get("/admin/lists/new").get_data(as_text=True)
    offered = re.findall(r'<option value="([^"]+)"></option>', page)
    assert "CR-PROV — Comité régional Provence-Alpes-Côte d’Azur" in offered
    assert all(not value.startswith(("CR-IDF", "FFESSM")) for value in offered)  # nothing outside the scope
    for structure in ("CD-13 — Comité départemental 13", "comité départemental 13", "cd-13"):
        local = f"essai.{len(structure)}"
        response = regional.post("/admin/lists/new", data={
            "csrf_token": token_of(regional, "/admin/lists/new"), "local_part": local, "structure": structure,
            "domain": Domain.get(Domain.name == demo.LIST_DOMAIN).id, "kind": "static"})
        assert response.status_code == 302, structure
        assert the_list(local).structure.code == "CD-13"


def test_bad_lines_stay_in_the_field_after_creation(federal):
    text = "un@example.org\npas une adresse\ndeux@example.org\nencore@@faux"
    response = federal.post("/admin/lists/new", data={
        "csrf_token": token_of(federal, "/admin/lists/new"), "local_part": "avec.erreurs", "structure": "FFESSM",
        "domain": Domain.get(Domain.name == demo.LIST_DOMAIN).id, "kind": "static", "subscribers": text})
    page = response.get_data(as_text=True)
    ml = the_list("avec.erreurs")
    assert response.status_code == 200 and subscribers.subscriber_count(ml) == 2  # created with the valid lines
    assert "avec.erreurs@listes.ffessm-demo.fr est créée" in page
    assert "pas une adresse\nencore@@faux\ndeux@example.org\nun@example.org</textarea>" in page
    assert "ligne 1 : « pas une adresse » : adresse invalide" in page
    assert "ligne 2 : « encore@@faux » : adresse invalide" in page
    assert f'action="/admin/lists/{ml.id}/subscribers"' in page  # the next save goes to the list, not to "new"


def test_the_domain_selector_shows_states_and_defaults_to_an_enabled_domain(regional):
    page = regional.get("/admin/lists/new").get_data(as_text=True)
    on, off = Domain.get(Domain.name == demo.LIST_DOMAIN), Domain.get(Domain.name == demo.OFF_DOMAIN)
    assert demo.OFF_DOMAIN < demo.LIST_DOMAIN  # alphabetically first, switched off: it was the default
    assert re.search(rf'<option value="{off.id}">{re.escape(demo.OFF_DOMAIN)} \(listes désactivées', page)
    assert re.search(rf'<option selected value="{on.id}">{re.escape(demo.LIST_DOMAIN)} \(listes activées\)', page)


def test_switching_a_domain_off_is_confirmed_with_what_it_stops(federal):
    domain = Domain.get(Domain.name == demo.LIST_DOMAIN)
    path = f"/admin/domains/{domain.id}"
    asked = federal.post(path, data={"csrf_token": token_of(federal, "/admin/domains"), "enabled": "0"})
    page = asked.get_data(as_text=True)
    lists = list(MailingList.select().where(MailingList.domain == domain))
    total = sum(count_recipients(ml) for ml in lists)
    assert asked.status_code == 200 and Domain.get_by_id(domain.id).lists_enabled is True  # not yet
    assert f"Cela arrête {len(lists)} listes, qui atteignent ensemble aujourd’hui {total} destinataires" in page
    assert all(ml.address in page for ml in lists)
    done = federal.post(path, data={"csrf_token": token_of(federal, "/admin/domains"), "enabled": "0",
                                    "confirm": "yes"})
    assert done.status_code == 302 and Domain.get_by_id(domain.id).lists_enabled is False
    assert AuditEvent.select().where(AuditEvent.action == "domain.disabled").count() == 1
    again = federal.post(path, data={"csrf_token": token_of(federal, "/admin/domains"), "enabled": "1"})
    assert again.status_code == 302 and Domain.get_by_id(domain.id).lists_enabled is True  # on: one click


def test_a_role_based_list_lands_on_its_criteria_with_grouped_role_checkboxes(regional, settings):
    response = regional.post("/admin/lists/new", data={
        "csrf_token": token_of(regional, "/admin/lists/new"), "local_part": "presidents.prov", "notify": "y",
        "structure": "CR-PROV", "domain": Domain.get(Domain.name == demo.LIST_DOMAIN).id, "kind": ListKind.ROLE})
    ml = the_list("presidents.prov")
    assert response.headers["Location"] == f"/admin/lists/{ml.id}/criteria"
    page = regional.get(response.headers["Location"]).get_data(as_text=True)
    assert "<select multiple" not in page
    groups = re.findall(r'<fieldset class="role-group">\s*<legend>([^<]+)</legend>', page)
    assert groups == ["Comité directeur", "Commissions", "Encadrement (moniteurs)"]
    assert re.search(r'<input type="checkbox" name="criteria-0-roles" value="\d+" id="criteria-0-roles-\d+"> '
                     r'<label for="criteria-0-roles-\d+">Président\(e\)</label>', page)
    # told: the administrators above Provence (the federation's), never the creator
    [mail] = read_captured(settings.capture_dir)
    assert mail["To"] == "sophie.lemoine@ffessm-demo.fr"


def test_an_address_too_long_for_its_list_id_is_refused_in_the_field(federal):
    # A 64-octet local part is valid, but on a long domain the address (and the List-Id ``local.domain``,
    # RFC 2919: at most 255 octets) would pass RFC 5321's 254.
    national = Domain.get(Domain.name == demo.LIST_DOMAIN)
    label = "c" * 63
    long_domain = Domain.create(name=f"{label}.{label}.{label}.{'d' * 40}.fr", structure=national.structure,
                                created_at=national.created_at)
    local = "comite.directeur.regional.provence.alpes.cote.azur.corse.bureau"
    assert len(local) == 63 and len(f"{local}@{long_domain.name}") == 63 + 1 + len(long_domain.name) > 254
    form = {"csrf_token": token_of(federal, "/admin/lists/new"), "local_part": local, "structure": "FFESSM",
            "kind": "static", "name": "Bureau", "subscribers": "un@example.org"}
    response = federal.post("/admin/lists/new", data={**form, "domain": long_domain.id})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "est trop longue : 254 caractères au plus, domaine compris" in page
    assert re.search(r'id="local_part"[^>]*aria-invalid="true"|aria-invalid="true"[^>]*id="local_part"', page)
    assert f'value="{local}"' in page and "un@example.org</textarea>" in page  # nothing typed is lost
    assert not MailingList.select().where(MailingList.local_part == local).exists()
    # The same name fits on the federation's domain: its List-Id is the address's length, within 255.
    response = federal.post("/admin/lists/new", data={**form, "csrf_token": token_of(federal, "/admin/lists/new"),
                                                      "domain": national.id})
    assert response.status_code in (200, 302) and the_list(local).domain_id == national.id
