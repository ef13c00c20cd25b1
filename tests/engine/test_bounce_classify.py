"""Classification of returned mail: a corpus of real-shaped DSNs from many MTAs (tests/data/dsn/), a
held-out set the classifier was not written against (tests/data/dsn/heldout/), hostile input, SMTP replies,
and the ``palanquee bounces classify`` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.bounces.classify import Kind, classify, classify_reply
from engine.bounces.commands import bounces_group

CORPUS = Path(__file__).resolve().parent.parent / "data" / "dsn"
ROOT = CORPUS.parent.parent.parent


def expected(folder: Path) -> list[tuple[str, str, str, str]]:
    rows = []
    for line in (folder / "expected.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, kind, status, recipients = (line.split("\t") + ["", "", ""])[:4]
            rows.append((name, kind, status, recipients))
    return rows


def _ids(rows: list[tuple[str, str, str, str]]) -> list[str]:
    return [row[0] for row in rows]


@pytest.mark.parametrize(("name", "kind", "status", "recipients"), expected(CORPUS), ids=_ids(expected(CORPUS)))
def test_corpus(name: str, kind: str, status: str, recipients: str) -> None:
    found = classify((CORPUS / name).read_bytes())
    assert (found.kind, found.status, " ".join(found.recipients)) == (kind, status, recipients)


def test_the_corpus_covers_every_kind_and_the_mtas_asked_for() -> None:
    rows = expected(CORPUS)
    assert {kind for _, kind, _, _ in rows} == set(Kind.ALL)
    names = " ".join(name for name, *_ in rows)
    for mta in ("postfix", "exim", "sendmail", "exchange", "outlook", "gmail", "orange", "qmail", "lotus",
                "provider-text", "vacation"):
        assert mta in names, mta
    assert {f.name for f in CORPUS.glob("*.eml")} == {name for name, *_ in rows}


def test_delay_warnings_are_not_failures_yet() -> None:
    for name in ("postfix-4.2.2-delayed.eml", "sendmail-warning-4.4.7.eml"):
        assert classify((CORPUS / name).read_bytes()).final is False
    assert classify((CORPUS / "postfix-5.1.1-orange.eml").read_bytes()).final is True


def test_mailbox_full_wins_over_a_5_1_1_code() -> None:
    # Orange answers "552 5.1.1 … Boite du destinataire pleine" for a full mailbox: not a dead address.
    found = classify((CORPUS / "postfix-5.1.1-orange-overquota.eml").read_bytes())
    assert (found.kind, found.status) == (Kind.SOFT, "5.1.1")
    assert "overquota" in found.diagnostic


def test_words_of_the_returned_copy_are_not_read() -> None:
    # The list message quoted in the Exim bounce speaks of spam, a full mailbox and an unknown address.
    found = classify((CORPUS / "exim-text-5.1.1.eml").read_bytes())
    assert found.kind == Kind.HARD and "User unknown" in found.diagnostic


@pytest.mark.parametrize(("reply", "kind", "status", "final"), [
    ("550 5.1.1 <jean@example.fr>: Recipient address rejected: User unknown", Kind.HARD, "5.1.1", True),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", Kind.HARD, "5.1.10",
     True),
    ("552 5.2.2 Mailbox full", Kind.SOFT, "5.2.2", True),
    ("550 5.7.1 Service unavailable; client host blocked using Spamhaus", Kind.POLICY, "5.7.1", True),
    ("554 5.7.1 Relay access denied", Kind.POLICY, "5.7.1", True),
    ("550 Requested action not taken: mailbox unavailable", Kind.HARD, "", True),
    ("550 spam detected", Kind.POLICY, "", True),
    ("554 5.6.0 Cannot render the list's copy: line break in a header value", Kind.POLICY, "5.6.0", True),
    ("553 5.6.7 <élodie@exemple.fr>: the server does not accept non-ASCII addresses (RFC 6531)", Kind.POLICY,
     "5.6.7", True),
    ("451 4.7.1 Greylisted, try again later", Kind.POLICY, "4.7.1", False),
    ("421 4.4.2 connection lost (gave up after 5 days, 0:00:00)", Kind.SOFT, "4.4.2", False),
    ("550 5.1.1 host 5.1.1.1 refused", Kind.HARD, "5.1.1", True),
    ("550 host 192.0.2.1 said no", Kind.SOFT, "", True),
])
def test_synchronous_replies(reply: str, kind: str, status: str, final: bool) -> None:
    found = classify_reply(reply)
    assert (found.kind, found.status, found.final) == (kind, status, final)


@pytest.mark.parametrize("data", [
    b"",
    b"\x00\xff\xfe" * 10_000,
    b"Subject: =?utf-8?b?!!!?= =?x-unknown?q?abc?=\n\nhello",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\nContent-Type: "
    b"message/delivery-status\n\nFinal-Recipient: rfc822; <>\nAction: failed\nStatus: 9.9.9.9\n",
    b"Content-Type: multipart/mixed; boundary=a\n\n" + b"--a\nContent-Type: multipart/mixed; boundary=a\n\n" * 5000,
    b"From: MAILER-DAEMON@x\nSubject: Undelivered Mail\n\n" + b"x" * 5_000_000,
    b"From: MAILER-DAEMON@x\nSubject: Undelivered Mail\n\n" + b"a.b-" * 2_000_000,
])
def test_hostile_input_gives_an_answer(data: bytes) -> None:
    # Before the address pattern had bounded repetitions, the 5 MB one took 80 s (quadratic search).
    assert classify(data).kind in Kind.ALL


def test_a_status_without_a_readable_recipient_is_still_classified() -> None:
    data = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n"
            b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
            b"Final-Recipient: rfc822; not an address\nAction: failed\nStatus: 5.1.1\n\n--x--\n")
    found = classify(data)
    assert (found.kind, found.status, found.recipients) == (Kind.HARD, "5.1.1", ())


def test_global_delivery_status_of_an_smtputf8_address() -> None:
    # RFC 6533: message/global-delivery-status, utf-8 address type.
    data = ("Content-Type: multipart/report; report-type=global-delivery-status; boundary=x\n\n--x\n"
            "Content-Type: message/global-delivery-status\n\nReporting-MTA: dns; mx.exemple.fr\n\n"
            "Final-Recipient: utf-8; élodie@exemple.fr\nAction: failed\nStatus: 5.1.1\n"
            "Diagnostic-Code: smtp; 550 5.1.1 unknown user\n\n--x--\n").encode()
    found = classify(data)
    assert (found.kind, found.status, found.recipients) == (Kind.HARD, "5.1.1", ("élodie@exemple.fr",))


def test_the_command_prints_the_expected_table() -> None:
    rows = expected(CORPUS)
    files = [str(CORPUS / name) for name, *_ in rows]
    result = CliRunner().invoke(bounces_group, ["classify", *files])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == len(rows)
    for line, (name, kind, status, recipients) in zip(lines, rows, strict=True):
        assert line.split("\t") == [str(CORPUS / name), kind, status, recipients]


def test_the_command_reads_standard_input_and_reports_unreadable_files(tmp_path: Path) -> None:
    data = (CORPUS / "qmail-5.1.1.eml").read_bytes()
    result = CliRunner().invoke(bounces_group, ["classify", "-", str(tmp_path / "missing.eml")], input=data)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["-\thard\t5.1.1\tjulien.bonnet@plongee-hyeres.example"]
    assert "missing.eml" in result.stderr


def test_the_palanquee_entry_point_needs_no_database_or_secret(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "portal.cli", "bounces", "classify",
                             str(CORPUS / "vacation-sieve.eml")], capture_output=True, text=True, cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", "PALANQUEE_INSTANCE": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{CORPUS / 'vacation-sieve.eml'}\tauto-reply\t\t\n"


# --- the held-out set: written after the classifier was frozen, run once, never tuned on ---------------

HELD_OUT = CORPUS / "heldout"
# What the first and only run got wrong (kept visible: strict xfails turn into failures once fixed). The first
# set's four misses (a Mimecast anti-spoofing policy read as soft, "introuvable" read as soft, the list address
# quoted by Exchange 2003 and an OpenSMTPD copy marker taken as failed recipients) were fixed by general rules
# (tests below); a second set, heldout2/, written blind afterwards, measures again.
HELD_OUT_MISSES: dict[str, str] = {}


def _held_out_params() -> list[object]:
    return [pytest.param(*row, marks=[pytest.mark.xfail(reason=HELD_OUT_MISSES[row[0]], strict=True)]
                         if row[0] in HELD_OUT_MISSES else []) for row in expected(HELD_OUT)]


@pytest.mark.parametrize(("name", "kind", "status", "recipients"), _held_out_params(), ids=_ids(expected(HELD_OUT)))
def test_held_out(name: str, kind: str, status: str, recipients: str) -> None:
    found = classify((HELD_OUT / name).read_bytes())
    assert (found.kind, found.status, " ".join(found.recipients)) == (kind, status, recipients)


def test_held_out_never_disables_by_mistake() -> None:
    # The error that costs a member their mail: "hard" for what is not. None on the held-out set; and
    # the kinds are right for every file since its misses were fixed (15 of 17 at its first run).
    rows = expected(HELD_OUT)
    found = {name: classify((HELD_OUT / name).read_bytes()).kind for name, *_ in rows}
    assert not [name for name, kind, *_ in rows if found[name] == Kind.HARD and kind != Kind.HARD]
    assert sum(found[name] == kind for name, kind, *_ in rows) == len(rows)
    assert {f.name for f in HELD_OUT.glob("*.eml")} == set(found)


# --- the second held-out set: written blind by another engineer after the fixes above, run once --------

HELD_OUT_2 = CORPUS / "heldout2"
# Its first and only run (2026-11-30): 13 of 20 exact, 18 of 20 kinds right, no address called hard that is not.
# Four misses were then fixed by general rules (tests below, on other words); a third blind set measures again.
# The three left name the Final-Recipient where the engine reports the Original-Recipient, on purpose.
_FINAL_NOT_ORIGINAL = ("reports the Original-Recipient, the address the list sent to (RFC 3464 §2.3.1, what scores "
                       "count against), where the label names the Final-Recipient the copy was forwarded to")
HELD_OUT_2_MISSES: dict[str, str] = {
    "fastmail-forward-5.4.4-domain-not-found.eml": _FINAL_NOT_ORIGINAL,
    "haraka-5.1.2-no-mx.eml": _FINAL_NOT_ORIGINAL,
    "kerio-alias-failed-and-delayed.eml": _FINAL_NOT_ORIGINAL + " (an alias expanded to two)",
}


# --- the third held-out set: written blind after the second set's fixes, run once -----------------------

HELD_OUT_3 = CORPUS / "heldout3"
HELD_OUT_3_MISSES: dict[str, str] = {}


# Each later set, with the misses of its one run kept visible (strict xfails turn into failures once fixed).
LATER_SETS = {HELD_OUT_2: HELD_OUT_2_MISSES, HELD_OUT_3: HELD_OUT_3_MISSES}


@pytest.mark.parametrize(("folder", "name", "kind", "status", "recipients"), [
    pytest.param(folder, *row, id=f"{folder.name}/{row[0]}",
                 marks=[pytest.mark.xfail(reason=misses[row[0]], strict=True)] if row[0] in misses else [])
    for folder, misses in LATER_SETS.items() for row in expected(folder)])
def test_later_held_out(folder: Path, name: str, kind: str, status: str, recipients: str) -> None:
    found = classify((folder / name).read_bytes())
    assert (found.kind, found.status, " ".join(found.recipients)) == (kind, status, recipients)


@pytest.mark.parametrize("folder", list(LATER_SETS), ids=lambda folder: folder.name)
def test_later_held_out_never_disables_by_mistake(folder: Path) -> None:
    rows = expected(folder)
    found = {name: classify((folder / name).read_bytes()).kind for name, *_ in rows}
    assert not [name for name, kind, *_ in rows if found[name] == Kind.HARD and kind != Kind.HARD]
    assert {f.name for f in folder.glob("*.eml")} == set(found)


def test_a_minimal_text_bounce_with_a_5xx_code_is_a_final_failure() -> None:
    data = (b"From: MAILER-DAEMON@mx.example.fr\nTo: l-bounces+1.abc@listes.example.fr\nSubject: Undelivered Mail\n\n"
            b"550 5.1.1 <elodie.dupre@example.fr>: Recipient address rejected\n")
    found = classify(data)
    assert (found.kind, found.status, found.recipients, found.final) == (
        Kind.HARD, "5.1.1", ("elodie.dupre@example.fr",), True)
    warning = classify(data.replace(b"550 5.1.1", b"450 4.2.2").replace(b"Recipient address rejected", b"over quota"))
    assert (warning.kind, warning.final) == (Kind.SOFT, False)


# --- general rules behind the first held-out set's four misses (texts unlike those files) ---------------

def _text_bounce(body: str, subject: str = "Undeliverable: [CD Provence] Sortie") -> bytes:
    return (f"From: MAILER-DAEMON@mx.club.example\nTo: bureau.cd83-bounces+42.abcdef@listes.example.fr\n"
            f"Subject: {subject}\nContent-Type: text/plain; charset=utf-8\n\n{body}").encode()


def test_the_list_and_its_owner_quoted_in_a_bounce_are_not_failed_recipients() -> None:
    data = _text_bounce("Your message to bureau.cd83@listes.example.fr (sent by bureau.cd83-owner@listes.example.fr)\n"
                        "could not be delivered to:\n  yves.martin@club.example: 550 user unknown\n")
    assert classify(data).recipients == ("yves.martin@club.example",)
    other_list = data.replace(b"sent by bureau.cd83-owner", b"sent by tresorier")
    assert "tresorier@listes.example.fr" in classify(other_list).recipients  # only the list's own addresses go


def test_a_copy_introduced_as_below_is_a_copy_of_the_original_message_is_not_read() -> None:
    # Read whole, the copy's "spam" would make it a policy refusal and its author a failed recipient.
    data = _text_bounce("Delivery to the following recipient failed permanently:\n\n    lea.moreau@club.example\n"
                        "    No such user here.\n\n"
                        "Here is a copy of the original message:\n\nFrom: Paul Girard <paul.girard@example.fr>\n"
                        "Subject: spam spam\n")
    found = classify(data)
    assert (found.kind, found.recipients) == (Kind.HARD, ("lea.moreau@club.example",))


@pytest.mark.parametrize("reason", ["550 Message rejected: local anti-spoofing rules",
                                    "550 Rejected by recipient domain policy (R4)",
                                    "550 Blocked by organisation policy: sender domain spoofed"])
def test_spoofing_and_policy_refusals_never_count_against_the_member(reason: str) -> None:
    assert classify_reply(reason).kind == Kind.POLICY


@pytest.mark.parametrize("words", ["Le destinataire est introuvable sur ce serveur.",
                                   "Boîte aux lettres introuvable : vérifiez l'adresse."])
def test_an_address_said_introuvable_is_hard(words: str) -> None:
    data = _text_bounce(f"Votre message n'a pas pu être remis à :\n  chloe.petit@club.example\n\n{words}\n",
                        subject="Échec de la remise")
    found = classify(data)
    assert (found.kind, found.recipients) == (Kind.HARD, ("chloe.petit@club.example",))
    assert classify(data.replace(b"introuvable", b"en maintenance")).kind == Kind.SOFT


# --- general rules behind the second held-out set's misses (texts unlike those files) -------------------

def test_the_quoted_author_and_message_ids_in_a_text_bounce_are_not_failed_recipients() -> None:
    data = _text_bounce("Message non remis à :\n   hugo.lefevre@club.example (utilisateur inconnu)\n\n"
                        "Message-Id: <A1B2.77@mail.example.fr>\n  Expéditeur : Paul Girard <paul.girard@example.fr>\n"
                        "  References: <xyz.1@listes.example.fr>\n", subject="Échec de la remise")
    found = classify(data)
    assert (found.kind, found.recipients) == (Kind.HARD, ("hugo.lefevre@club.example",))


def test_rappel_de_votre_message_starts_the_returned_copy() -> None:
    data = _text_bounce("Votre message n'a pas pu être remis à : ines.roy@club.example\nAdresse inconnue.\n\n"
                        "Rappel de votre message :\n  Objet : mailbox full\n  copie à marc.blanc@club.example\n",
                        subject="Échec de la remise")
    found = classify(data)
    assert (found.kind, found.recipients) == (Kind.HARD, ("ines.roy@club.example",))


def _auto(subject: str, headers: str = "", sender: str = "secretariat@club.example") -> bytes:
    return (f"From: {sender}\nTo: bureau.cd83-bounces+42.abcdef@listes.example.fr\nSubject: {subject}\n{headers}"
            f"Content-Type: text/plain; charset=utf-8\n\nBonjour, votre courriel est bien arrivé.\n").encode()


@pytest.mark.parametrize("subject", ["Accusé de réception : votre courriel", "Acknowledgement of receipt",
                                     "We have received your message"])
def test_an_acknowledgement_of_receipt_is_an_auto_reply(subject: str) -> None:
    assert classify(_auto(subject, "Precedence: bulk\n")).kind == Kind.AUTO_REPLY


def test_a_read_receipt_is_not_an_auto_reply() -> None:
    data = ("From: ines.roy@club.example\nTo: bureau.cd83-bounces+42.abcdef@listes.example.fr\n"
            "Subject: Accusé de réception (affiché) : [CD83] Sortie\nMIME-Version: 1.0\n"
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=b\n\n--b\n"
            "Content-Type: text/plain\n\nLe message a été affiché.\n--b\n"
            "Content-Type: message/disposition-notification\n\nReporting-UA: club.example; Thunderbird\n"
            "Final-Recipient: rfc822;ines.roy@club.example\nDisposition: manual-action/MDN-sent-manually; displayed\n"
            "--b--\n").encode()
    assert classify(data).kind == Kind.UNKNOWN


@pytest.mark.parametrize(("sender", "headers"), [("mailman-bounces@lists.club.example", ""),
                                                 ("bureau-request@lists.club.example", ""),
                                                 ("robot@lists.club.example", "X-Mailman-Version: 3.3.9\n")])
def test_a_list_servers_automatic_notice_goes_to_the_owner(sender: str, headers: str) -> None:
    data = _auto("Your message awaits moderator approval", "Auto-Submitted: auto-replied\n" + headers, sender)
    assert classify(data).kind == Kind.UNKNOWN
    assert classify(_auto("Réponse automatique : absent", "Auto-Submitted: auto-replied\n")).kind == Kind.AUTO_REPLY
