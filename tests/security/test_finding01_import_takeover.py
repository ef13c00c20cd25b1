"""Finding 1 (High): regional staff took over a higher account through the member import.

Every test goes through the real portal (the upload page, "mot de passe oublié", the links mailed) or the real
command line, on the demo federation: Karim is staff of the Provence region, Sophie a federation administrator
licensed in a Provence club, Élodie a member of that club.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from flask import Flask
from flask.testing import FlaskClient

from engine import clock, demo
from engine.directory.models import EmailChange, Member, StaffScope, Structure
from engine.outbound.mail import read_captured
from tests import factories as f
from tests.security.conftest import log_in, token_of

HEADER = "numero_licence;nom;prenom;email;club;saison;roles\n"
ATTACKER = "karim.pirate@example.net"


def upload(client: FlaskClient, rows: str) -> str:
    response = client.post("/admin/import", data={"csrf_token": token_of(client, "/admin/import"),
                                                  "file": (io.BytesIO((HEADER + rows).encode()), "export.csv")},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def row_for(member: Member, email: str, club: str = "") -> str:
    code = club or member.club.code
    return f"{member.licence_number};{member.last_name};{member.first_name};{email};{code};{member.licence_season};\n"


def mails_to(app: Flask, address: str) -> list:  # type: ignore[type-arg]
    folder = app.extensions["palanquee.settings"].capture_dir
    return [m for m in read_captured(folder) if m["To"] == address]


def link_in(message, path: str) -> str:  # type: ignore[no-untyped-def]
    return re.search(r"https://listes\.example\.fr(" + path + r"\S+)", message.get_content()).group(1)


def ask_reset(client: FlaskClient, identifier: str) -> None:
    client.post("/mot-de-passe-oublie", data={"identifier": identifier,
                                               "csrf_token": token_of(client, "/mot-de-passe-oublie")})


def test_finding1_regional_staff_cannot_take_over_the_federation_admin_by_import(app, regional):
    admin = Member.get(Member.licence_number == demo.ADMIN_LICENCE)
    page = upload(regional, row_for(admin, ATTACKER))
    assert "1 refusée(s)" in page and "<td class=\"number\">2</td>" in page
    assert f"{demo.ADMIN_LICENCE} a des droits d’administration" in page
    assert Member.get_by_id(admin.id).email == admin.email
    ask_reset(app.test_client(), ATTACKER)
    assert mails_to(app, ATTACKER) == []  # no reset link reaches the attacker


def test_finding1_regional_staff_cannot_change_staff_of_their_own_region(app, regional):
    colleague = f.member_with_password(club=Structure.get(Structure.code == "CLUB-13-0001"), licence_number="A-13-880001")
    StaffScope.create(member=colleague, structure=Structure.get(Structure.code == "CD-13"), granted_at=clock.now())
    page = upload(regional, row_for(colleague, ATTACKER) + row_for(colleague, colleague.email, "CLUB-13-0002")
                  .replace("A-13-880001", "A-13-880002"))
    assert "A-13-880001 a des droits d’administration" in page
    assert Member.get_by_id(colleague.id).email == colleague.email
    # a row that leaves the address alone is imported as usual
    page = upload(regional, row_for(colleague, colleague.email).replace(";2026;", ";2027;"))
    assert "0 refusée(s)" in page and Member.get_by_id(colleague.id).licence_season == 2027


def test_finding1_members_with_no_club_are_outside_every_regional_scope(app, regional):
    loner = f.member(club=None, email="seul@example.org", licence_number="A-13-880003")
    page = upload(regional, row_for(loner, ATTACKER, "CLUB-13-0001"))
    assert "A-13-880003 est hors de votre périmètre" in page
    loner = Member.get_by_id(loner.id)
    assert loner.email == "seul@example.org" and loner.club_id is None


def test_finding1_an_imposed_change_is_told_to_the_old_address_which_restores_it(app, regional):
    victim = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    old = victim.email
    assert "1 mis à jour" in upload(regional, row_for(victim, ATTACKER))
    assert Member.get_by_id(victim.id).email == ATTACKER
    [notice] = mails_to(app, old)
    assert notice["Subject"] == "Votre adresse e-mail a été modifiée" and ATTACKER in notice.get_content()
    # the attacker resets the password at the new address and logs in ...
    attacker = app.test_client()
    ask_reset(attacker, ATTACKER)
    reset_path = link_in(mails_to(app, ATTACKER)[-1], "/mot-de-passe/")
    attacker.post(reset_path, data={"password": "pirate-pirate-1", "confirm": "pirate-pirate-1",
                                    "csrf_token": token_of(attacker, reset_path)})
    assert attacker.get("/espace/").status_code == 200  # the reset link logged the attacker in
    # ... the owner follows the notice's link: the old address is back and the attacker is out
    owner = app.test_client()
    restore = link_in(notice, "/espace/adresse/annuler/")
    assert old in owner.get(restore).get_data(as_text=True)
    done = owner.post(restore, data={"csrf_token": token_of(owner, restore)})
    assert done.status_code == 200 and "est rétablie" in done.get_data(as_text=True)
    assert Member.get_by_id(victim.id).email == old
    assert attacker.get("/espace/").status_code == 302
    assert owner.get(restore).status_code == 409  # used once
    # the restored address counts as the member's own: the same file imported again keeps it
    page = upload(regional, row_for(victim, ATTACKER))
    assert Member.get_by_id(victim.id).email == old and "Adresses conservées" in page


def test_finding1_federation_admin_may_change_a_staff_address_and_the_old_one_is_told(app, federal):
    staff = Member.get(Member.licence_number == demo.STAFF_LICENCE)
    upload(federal, row_for(staff, "karim.nouveau@example.org"))
    assert Member.get_by_id(staff.id).email == "karim.nouveau@example.org"
    [notice] = mails_to(app, staff.email)
    assert "/espace/adresse/annuler/" in notice.get_content()
    change = EmailChange.get(EmailChange.member == staff.id)
    assert (change.source, change.old_email, change.new_email) == ("import", staff.email, "karim.nouveau@example.org")


def test_finding1_the_command_line_import_tells_the_old_address_too(app, tmp_path):
    victim = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    settings = app.extensions["palanquee.settings"]
    export = tmp_path / "export.csv"
    export.write_text(HEADER + row_for(victim, "elodie.nouvelle@example.org"), encoding="utf-8")
    f.close_bound_connection()
    env = {**os.environ, "PALANQUEE_DATABASE_URL": settings.database_url, "PALANQUEE_SECRET_KEY": settings.secret_key,
           "PALANQUEE_INSTANCE": str(settings.instance), "PALANQUEE_BASE_URL": settings.base_url}
    result = subprocess.run([sys.executable, "-m", "portal.cli", "import-members", str(export)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    [notice] = mails_to(app, victim.email)
    assert "l’import du fichier des licenciés" in notice.get_content()
    restore = link_in(notice, "/espace/adresse/annuler/")
    client = app.test_client()
    client.post(restore, data={"csrf_token": token_of(client, restore)})
    assert Member.get_by_id(victim.id).email == victim.email


def test_finding1_log_in_still_works_for_the_federation_admin_after_the_refused_row(app, regional):
    admin = Member.get(Member.licence_number == demo.ADMIN_LICENCE)
    upload(regional, row_for(admin, ATTACKER))
    assert log_in(app.test_client(), admin.email).status_code == 302


def test_finding1_a_staff_edit_of_one_address_is_guarded_and_told(app):
    """The engine's one entry point for staff edits of an address (no page offers it yet)."""
    import pytest

    from engine.directory import staff
    from engine.directory.staff_changes import impose_address as impose
    from engine.lists.authority import rights_beyond

    def impose_address(*args: object) -> object:
        return impose(*args, rights_beyond=rights_beyond)  # type: ignore[arg-type]

    settings = app.extensions["palanquee.settings"]
    karim = Member.get(Member.licence_number == demo.STAFF_LICENCE)
    sophie = Member.get(Member.licence_number == demo.ADMIN_LICENCE)
    elodie = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    with pytest.raises(staff.NotAllowed):
        impose_address(settings, karim, sophie, ATTACKER)
    with pytest.raises(staff.NotAllowed):
        impose_address(settings, karim, karim, ATTACKER)  # one's own rights are not "covered" either
    assert Member.get_by_id(sophie.id).email == sophie.email
    old = elodie.email
    impose_address(settings, karim, elodie, "")  # removing an address is a change too
    assert Member.get_by_id(elodie.id).email is None
    [notice] = mails_to(app, old)
    assert "elle a été retirée" in notice.get_content()
