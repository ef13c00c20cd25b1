"""Finding 1 (High), the gap closed after the first fix: rights held beyond the importer's scopes.

A regional staff member could change the address of a member of one of their clubs who moderates or owns a
national list, or sits on a national board, and then receive that list's moderation links or that board's
mail. Such rows are refused with their line number, through the upload page and through
``palanquee import-members --as-staff``; a staff edit of one address is refused alike.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine import clock, demo
from engine.directory import staff
from engine.directory.models import Mandate, Member, Role, Structure
from engine.directory.staff_changes import impose_address
from engine.lists.authority import rights_beyond
from engine.lists.models import ListModerator, MailingList
from engine.outbound.mail import read_captured
from tests import factories as f
from tests.security.conftest import wait_until
from tests.security.test_finding01_import_takeover import ATTACKER, HEADER, mails_to, row_for, upload

NATIONAL = "licencies.national"  # a list of the federation (outside Provence), post policy "moderators"
PROVENCE = "moniteurs.provence"


def provence_member(licence: str, email: str) -> Member:
    return f.member_with_password(club=Structure.get(Structure.code == "CLUB-13-0001"), licence_number=licence,
                                  email=email, licence_season=2026)


def the_list(local_part: str) -> MailingList:
    return MailingList.get(MailingList.local_part == local_part)


def refused(page: str, licence: str, why: str) -> bool:
    return "1 refusée(s)" in page and '<td class="number">2</td>' in page and f"{licence} {why}" in page


def test_finding1_regional_staff_cannot_take_over_a_national_list_moderator(app: Flask, regional: FlaskClient,
                                                                             engine_smtp: tuple[str, int]) -> None:
    moderator = provence_member("A-13-880010", "moderatrice@example.org")
    ListModerator.create(mailing_list=the_list(NATIONAL), member=moderator)
    page = upload(regional, row_for(moderator, ATTACKER))
    assert refused(page, "A-13-880010", "possède ou modère une liste hors de votre périmètre"), page
    assert Member.get_by_id(moderator.id).email == "moderatrice@example.org"
    # a post held on the national list: its moderation request reaches the moderator, never the attacker
    post = (f"From: Dehors <dehors@example.net>\r\nTo: {NATIONAL}@{demo.LIST_DOMAIN}\r\n"
            "Subject: A moderer\r\n\r\nBonjour.\r\n")
    with smtplib.SMTP(*engine_smtp, timeout=30) as client:
        client.sendmail("dehors@example.net", [f"{NATIONAL}@{demo.LIST_DOMAIN}"], post.encode())
    wait_until(lambda: mails_to(app, "moderatrice@example.org"), what="the moderation request")
    assert mails_to(app, ATTACKER) == []


def test_finding1_regional_staff_cannot_take_over_a_national_list_owner(app: Flask, regional: FlaskClient) -> None:
    owner = provence_member("A-13-880011", "proprietaire@example.org")
    MailingList.update(owner=owner).where(MailingList.local_part == NATIONAL).execute()
    page = upload(regional, row_for(owner, ATTACKER))
    assert refused(page, "A-13-880011", "possède ou modère une liste hors de votre périmètre"), page
    assert Member.get_by_id(owner.id).email == "proprietaire@example.org"


def test_finding1_regional_staff_cannot_take_over_a_national_board_member(app: Flask, regional: FlaskClient) -> None:
    board = provence_member("A-13-880012", "tresoriere.nationale@example.org")
    Mandate.create(member=board, role=Role.get(Role.code == "treasurer"), structure=Structure.get(
        Structure.parent.is_null()), starts_on=date(2024, 1, 1), source="import")
    page = upload(regional, row_for(board, ATTACKER))
    assert refused(page, "A-13-880012", "a un mandat hors de votre périmètre"), page
    assert Member.get_by_id(board.id).email == "tresoriere.nationale@example.org"


def test_finding1_rights_within_the_scopes_or_ended_do_not_protect(app: Flask, regional: FlaskClient) -> None:
    """Moderating a Provence list, a national list since deleted, or a national mandate that has ended."""
    member = provence_member("A-13-880013", "modo.provence@example.org")
    ListModerator.create(mailing_list=the_list(PROVENCE), member=member)
    gone = f.mailing_list("ancienne.nationale", the_list(NATIONAL).domain, Structure.get(Structure.parent.is_null()),
                          deleted_at=clock.now())
    ListModerator.create(mailing_list=gone, member=member)
    Mandate.create(member=member, role=Role.get(Role.code == "treasurer"), structure=Structure.get(
        Structure.parent.is_null()), starts_on=date(2020, 1, 1), ends_on=date(2021, 1, 1), source="import")
    page = upload(regional, row_for(member, "modo.nouvelle@example.org"))
    assert "0 refusée(s)" in page and "1 mis à jour" in page, page
    assert Member.get_by_id(member.id).email == "modo.nouvelle@example.org"
    assert mails_to(app, "modo.provence@example.org")  # told, with the link that restores it


def test_finding1_the_federation_admin_covers_national_lists(app: Flask, federal: FlaskClient) -> None:
    moderator = provence_member("A-13-880014", "moderateur@example.org")
    ListModerator.create(mailing_list=the_list(NATIONAL), member=moderator)
    page = upload(federal, row_for(moderator, "moderateur.nouveau@example.org"))
    assert "0 refusée(s)" in page, page
    assert Member.get_by_id(moderator.id).email == "moderateur.nouveau@example.org"


def run_import(app: Flask, export: Path, *options: str) -> subprocess.CompletedProcess[str]:
    settings = app.extensions["palanquee.settings"]
    f.close_bound_connection()
    env = {**os.environ, "PALANQUEE_DATABASE_URL": settings.database_url, "PALANQUEE_SECRET_KEY": settings.secret_key,
           "PALANQUEE_INSTANCE": str(settings.instance), "PALANQUEE_BASE_URL": settings.base_url}
    return subprocess.run([sys.executable, "-m", "portal.cli", "import-members", str(export), *options],
                          capture_output=True, text=True, env=env, timeout=120)


def test_finding1_the_command_line_refuses_alike_with_a_staff_authority(app: Flask, tmp_path: Path) -> None:
    moderator = provence_member("A-13-880015", "moderatrice.cli@example.org")
    ListModerator.create(mailing_list=the_list(NATIONAL), member=moderator)
    export = tmp_path / "export.csv"
    export.write_text(HEADER + row_for(moderator, ATTACKER), encoding="utf-8")
    result = run_import(app, export, "--as-staff", demo.STAFF_LICENCE.lower())
    assert result.returncode == 1, result.stderr
    assert "line 2: A-13-880015 owns or moderates a list beyond your scopes" in result.stdout
    assert Member.get_by_id(moderator.id).email == "moderatrice.cli@example.org"
    unknown = run_import(app, export, "--as-staff", demo.MEMBER_LICENCE)  # a member who is not staff
    assert unknown.returncode != 0 and "no staff member" in unknown.stderr
    assert Member.get_by_id(moderator.id).email == "moderatrice.cli@example.org"
    # the system (no --as-staff: the federation's own export) covers everything, and tells the old address
    assert run_import(app, export).returncode == 0
    assert Member.get_by_id(moderator.id).email == ATTACKER
    assert mails_to(app, "moderatrice.cli@example.org")


def test_finding1_a_staff_edit_of_one_address_refuses_a_national_moderator(app: Flask) -> None:
    settings = app.extensions["palanquee.settings"]
    karim = Member.get(Member.licence_number == demo.STAFF_LICENCE)
    moderator = provence_member("A-13-880016", "moderateur.edit@example.org")
    ListModerator.create(mailing_list=the_list(NATIONAL), member=moderator)
    with pytest.raises(staff.NotAllowed):
        impose_address(settings, karim, moderator, ATTACKER, rights_beyond=rights_beyond)
    assert Member.get_by_id(moderator.id).email == "moderateur.edit@example.org"
    assert not [m for m in read_captured(settings.capture_dir) if m["To"] == ATTACKER]
