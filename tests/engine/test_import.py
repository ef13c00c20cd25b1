"""Member import: the sample file, idempotence, bad rows with line numbers, member-set addresses, scope."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from engine import clock, demo
from engine.audit import AuditEvent
from engine.directory import importer
from engine.directory.models import Mandate, Member, Role, StaffScope, Structure
from engine.lists.authority import rights_beyond

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "sample-members.csv"
HEADER = "numero_licence;nom;prenom;email;club;saison;roles\n"


@pytest.fixture
def federation(settings, db):
    demo.build(settings, members=10)
    return settings


def run(settings, text, **kwargs):
    return importer.import_members(settings, io.StringIO(text), rights_beyond=rights_beyond, **kwargs)


def snapshot():
    members = sorted(Member.select(Member.licence_number, Member.first_name, Member.last_name, Member.email,
                                   Member.club, Member.licence_valid_until).tuples())
    mandates = sorted(Mandate.select(Mandate.member, Mandate.role, Mandate.structure, Mandate.starts_on,
                                     Mandate.ends_on).tuples())
    return members, mandates


def test_sample_file_imports_and_reimport_changes_nothing(federation):
    settings = federation
    with open(SAMPLE, encoding="utf-8-sig", newline="") as handle:
        report = importer.import_members(settings, handle, rights_beyond=rights_beyond)
    assert (report.rows, report.created, report.bad) == (6, 6, [])
    marc = Member.get(Member.licence_number == "A-13-200001")
    assert marc.club.code == "CLUB-13-0001" and marc.licence_valid_until == date(2027, 9, 14)
    held = {(m.role.code, m.structure.code, m.starts_on, m.ends_on) for m in marc.mandates}
    assert held == {("president", "CLUB-13-0001", date(2024, 1, 1), date(2028, 12, 31)),
                    ("instructor_e2", "CLUB-13-0001", date(2026, 9, 15), None)}
    assert Member.get(Member.licence_number == "A-13-200005").email is None
    before, events = snapshot(), AuditEvent.select().count()
    with open(SAMPLE, encoding="utf-8-sig", newline="") as handle:
        again = importer.import_members(settings, handle, rights_beyond=rights_beyond)
    assert (again.created, again.updated, again.unchanged, again.mandates_added, again.mandates_removed) == (
        0, 0, 6, 0, 0)
    assert snapshot() == before
    assert AuditEvent.select().count() == events + 1  # only the run's summary


def test_bad_rows_are_reported_and_good_rows_imported(federation):
    text = HEADER + (
        "A-13-300001;Un;Bon;un@example.org;CLUB-13-0001;2026;\n"
        "A-13-300002;Deux;Mauvais;pas-une-adresse;CLUB-13-0001;2026;\n"
        "A-13-300003;Trois;Bon;trois@example.org;CLUB-13-0002;2026;president@CLUB-13-0002\n"
        "A-13-300004;Quatre;Club inconnu;q@example.org;CLUB-99-9999;2026;\n"
        "A-13-300001;Cinq;Doublon;cinq@example.org;CLUB-13-0001;2026;\n"
        "A-13-300006;Six;Rôle;six@example.org;CLUB-13-0001;2026;pape@CLUB-13-0001\n"
        ";Sept;Sans licence;sept@example.org;CLUB-13-0001;2026;\n"
        "A-13-300008;Huit;Dates;huit@example.org;CLUB-13-0001;2026;president@CLUB-13-0001:2026-01-01..2025-01-01\n"
        "A-13-300009;Neuf;Saison;neuf@example.org;CLUB-13-0001;l'an dernier;\n"
        "A-13-300010;Dix;Bon;dix@example.org;CLUB-13-0001;2026;secretary@cd-13:..2027-06-30\n")
    report = run(federation, text)
    assert [(b.line, b.reason) for b in report.bad] == [
        (3, "bad_email"), (5, "unknown_club"), (6, "duplicate"), (7, "unknown_role"), (8, "missing"),
        (9, "bad_dates"), (10, "bad_season")]
    assert report.bad[2].describe() == "licence number A-13-300001 already on line 2"
    assert report.created == 3
    assert {m.licence_number for m in Member.select().where(Member.licence_number.startswith("A-13-3"))} == {
        "A-13-300001", "A-13-300003", "A-13-300010"}
    dix = Member.get(Member.licence_number == "A-13-300010")
    [mandate] = dix.mandates
    assert (mandate.structure.code, mandate.starts_on, mandate.ends_on) == ("CD-13", date(2026, 9, 15),
                                                                           date(2027, 6, 30))
    assert run(federation, text).created == 0  # the good rows are already there; the bad ones still reported


def test_changes_and_removed_mandates_follow_the_export(federation):
    run(federation, HEADER + "A-13-400001;Martin;Luc;luc@example.org;CLUB-13-0001;2025;"
                             "president@CLUB-13-0001|secretary@CLUB-13-0001\n")
    luc = Member.get(Member.licence_number == "A-13-400001")
    staff_made = Mandate.create(member=luc, role=Role.get(Role.code == "treasurer"),
                                structure=Structure.get(Structure.code == "CLUB-13-0001"),
                                starts_on=date(2020, 1, 1), source="staff")
    report = run(federation, HEADER + "A-13-400001;Martin;Lucas;LUC@example.org;CLUB-13-0002;2026;"
                                      "president@CLUB-13-0001\n")
    assert (report.updated, report.mandates_removed) == (1, 1)
    luc = Member.get_by_id(luc.id)
    assert (luc.first_name, luc.club.code, luc.licence_season, luc.email) == (
        "Lucas", "CLUB-13-0002", 2026, "luc@example.org")  # same address in other case: kept as it was
    assert {m.role.code for m in luc.mandates} == {"president", "treasurer"}
    assert Mandate.get_by_id(staff_made.id).source == "staff"


def test_an_address_the_member_changed_is_kept_unless_told(federation):
    run(federation, HEADER + "A-13-500001;Roux;Ana;ana@old.example;CLUB-13-0001;2026;\n")
    ana = Member.get(Member.licence_number == "A-13-500001")
    with clock.frozen(datetime(2030, 1, 1)):  # later than the import
        ana.set_email("ana@new.example")
        ana.email_set_by_member_at = clock.now()
        ana.save()
    stale = HEADER + "A-13-500001;Roux;Ana;ana@old.example;CLUB-13-0001;2026;\n"
    report = run(federation, stale)
    assert report.kept_addresses == [(2, "A-13-500001")]
    assert Member.get_by_id(ana.id).email == "ana@new.example"
    assert run(federation, stale).kept_addresses == [(2, "A-13-500001")]  # still protected next time
    report = run(federation, stale, overwrite_emails=True)
    assert report.kept_addresses == [] and Member.get_by_id(ana.id).email == "ana@old.example"


def test_the_export_catching_up_ends_the_protection(federation):
    run(federation, HEADER + "A-13-600001;Roux;Bea;bea@old.example;CLUB-13-0001;2026;\n")
    bea = Member.get(Member.licence_number == "A-13-600001")
    with clock.frozen(datetime(2030, 1, 1)):
        bea.set_email("bea@new.example")
        bea.email_set_by_member_at = clock.now()
        bea.save()
    with clock.frozen(datetime(2030, 2, 1)):
        assert run(federation, HEADER + "A-13-600001;Roux;Bea;bea@new.example;CLUB-13-0001;2026;\n").kept_addresses == []
    with clock.frozen(datetime(2030, 3, 1)):  # the federation now changes it on purpose
        run(federation, HEADER + "A-13-600001;Roux;Bea;bea@club.example;CLUB-13-0001;2026;\n")
    assert Member.get_by_id(bea.id).email == "bea@club.example"


def test_staff_import_is_limited_to_their_scope(federation):
    karim = Member.get(Member.licence_number == demo.STAFF_LICENCE)  # Provence
    assert StaffScope.select().where(StaffScope.member == karim).count() == 1
    text = HEADER + ("A-13-700001;Ok;Provence;ok@example.org;CLUB-13-0001;2026;\n"
                     "A-29-700002;Non;Bretagne;non@example.org;CLUB-29-0003;2026;\n"
                     "A-13-700003;Non;Mandat national;nat@example.org;CLUB-13-0001;2026;president@FFESSM\n")
    report = importer.import_members(federation, io.StringIO(text), actor=karim, rights_beyond=rights_beyond)
    assert [(b.line, b.reason) for b in report.bad] == [(3, "out_of_scope"), (4, "out_of_scope")]
    assert report.created == 1


def test_header_is_checked_and_comma_files_accepted(federation):
    with pytest.raises(importer.ImportFileError, match="numero_licence"):
        run(federation, "nom;prenom\nA;B\n")
    report = run(federation, "NUMERO_LICENCE,nom,prenom,email,club,saison\nA-13-800001,X,Y,,CLUB-13-0001,2026\n")
    assert report.created == 1 and report.bad == []


def test_command_line_reports_progress_and_bad_rows(tmp_path, federation):
    import os

    bad = tmp_path / "export.csv"
    bad.write_text(SAMPLE.read_text(encoding="utf-8-sig") + "A-13-900001;X;Y;nope;CLUB-13-0001;2026;\n",
                   encoding="utf-8-sig")
    env = {**os.environ, "PALANQUEE_DATABASE_URL": federation.database_url, "PALANQUEE_SECRET_KEY": "k" * 32,
           "PALANQUEE_INSTANCE": str(tmp_path / "instance")}
    result = subprocess.run([sys.executable, "-W", "error", "-m", "portal.cli", "import-members", str(bad)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "7 rows: 6 created" in result.stdout and "line 8: invalid e-mail address 'nope'" in result.stdout
    assert "importing" in result.stderr
    again = subprocess.run([sys.executable, "-m", "portal.cli", "import-members", str(SAMPLE)], capture_output=True,
                           text=True, env=env, timeout=120)
    assert again.returncode == 0 and "0 created, 0 updated, 6 unchanged, 0 rejected" in again.stdout


def test_opt_outs_survive_a_reimport(federation):
    from engine.lists import optouts
    from engine.lists.models import MailingList, OptOut
    from engine.lists.resolve import count_recipients

    run(federation, HEADER + "A-13-950001;Roux;Eva;eva@example.org;CLUB-13-0001;2026;\n")
    eva = Member.get(Member.licence_number == "A-13-950001")
    everyone = MailingList.get(MailingList.local_part == "licencies.provence")
    before = count_recipients(everyone)
    optouts.leave(everyone, member=eva, source="footer")
    optouts.leave(everyone, email_key="eva.new@example.org", source="mailto")
    run(federation, HEADER + "A-13-950001;Roux;Eva;eva.new@example.org;CLUB-13-0002;2026;\n")
    assert OptOut.select().where(OptOut.mailing_list == everyone).count() == 2
    assert count_recipients(everyone) == before - 1
