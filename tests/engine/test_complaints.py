"""Complaint reports (ARF, RFC 5965) through the real engine: a post goes out over SMTP to the recording smarthost,
a feedback loop's report about one copy comes back over SMTP, at the domain's ``fbl@`` address or at the copy's
``LIST-bounces+TOKEN@`` return path, and the complainer leaves the list as by one-click unsubscribe
(../shared/DELIVERABILITY.md §2.3, §7.2). Reports are built from the copy the sink received, shaped as Yahoo's CFL
(recipient redacted, ``text/rfc822-headers``) and Signal Spam's (the whole copy as ``message/rfc822``)."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from datetime import datetime

import pytest

from engine import clock
from engine.audit import AuditEvent
from engine.bounces.models import Bounce, BounceEvent
from engine.bounces.service import OWNER_FORWARDS_PER_DAY
from engine.lists.models import OptOut
from engine.posting.models import Message, MessageState
from tests import factories
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Received, Sink

ELODIE = "elodie.dupre@example.fr"
FAMILY = "Famille.Martin@example.fr"
FBL = "fbl@listes.example.fr"
T0 = datetime(2026, 11, 24, 9, 0)


@pytest.fixture
def frozen() -> Iterator[object]:
    with clock.frozen(T0) as move:
        yield move


def distribute(engine, sink: Sink, subject: str = "Sortie à Cassis") -> dict[str, Received]:  # type: ignore[no-untyped-def]
    """Post to the board list; its copies by recipient once the message is done."""
    before = len(sink.handler.received)
    send(engine, post(subject=subject, Message_ID=f"<{abs(hash(subject))}@example.fr>"))
    wait_until(lambda: not Message.select().where(Message.state != MessageState.DONE).exists(), what="done")
    copies = [r for r in sink.handler.received[before:] if "-bounces+" in r.mail_from]
    return {r.rcpt_tos[0]: r for r in copies}


def header_block(copy: Received, *, return_path: bool, redact: str | None = None) -> bytes:
    """The copy's header as the receiving mailbox stored it (with Return-Path: RFC 5321 §4.4), To redacted."""
    head = copy.data.split(b"\r\n\r\n", 1)[0]
    if redact is not None:
        head = re.sub(rb"(?mi)^To:.*(\r\n[ \t].*)*", b"To: " + redact.encode(), head)
    prefix = b"Return-Path: " + copy.mail_from.encode() + b"\r\n" if return_path else b""
    return prefix + head + b"\r\n"


def report(returned: bytes, *, returned_type: str, fields: dict[str, str], reporter: str) -> bytes:
    boundary = "----=_ARF_7Hh2k"
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return (f"From: {reporter}\r\nTo: {FBL}\r\nSubject: FW: Sortie\r\nDate: Tue, 24 Nov 2026 11:02:00 +0100\r\n"
            f"Message-ID: <arf.{abs(hash(returned))}@feedback.example>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"This is an email abuse report for an email message received on Tue, 24 Nov 2026.\r\n\r\n"
            f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n{lines}\r\n"
            f"--{boundary}\r\nContent-Type: {returned_type}\r\n\r\n").encode() + returned + \
        f"\r\n--{boundary}--\r\n".encode()


def yahoo_cfl(copy: Received) -> bytes:
    """Yahoo's Complaint Feedback Loop: the recipient redacted, the copy's header only, no envelope."""
    return report(header_block(copy, return_path=False, redact="redacted@yahoo.example"),
                  returned_type="text/rfc822-headers", reporter="Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.example>",
                  fields={"Feedback-Type": "abuse", "User-Agent": "Yahoo!-Mail-Feedback/2.0", "Version": "0.1",
                          "Original-Rcpt-To": "redacted@yahoo.example", "Received-Date": "Tue, 24 Nov 2026 10:30:00 +0100",
                          "Reported-Domain": "listes.example.fr"})


def signal_spam(copy: Received) -> bytes:
    """Signal Spam's report (Orange, SFR): the whole copy as the mailbox stored it, the envelope sender given."""
    body = copy.data.split(b"\r\n\r\n", 1)[1]
    return report(header_block(copy, return_path=True) + b"\r\n" + body, returned_type="message/rfc822",
                  reporter="Signal Spam <noreply@signal-spam.example>",
                  fields={"Feedback-Type": "abuse", "User-Agent": "SignalSpam/1.0", "Version": "1",
                          "Original-Mail-From": copy.mail_from, "Original-Rcpt-To": copy.rcpt_tos[0],
                          "Arrival-Date": "Tue, 24 Nov 2026 10:30:00 +0100"})


def deliver(engine, to: str | list[str], data: bytes, sender: str = "") -> dict:  # type: ignore[no-untyped-def,type-arg]
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=10) as client:
        return client.sendmail(sender, [to] if isinstance(to, str) else to, data)


def left(federation: Federation) -> list[tuple[str, str]]:
    return sorted((o.member.email, o.source) for o in OptOut.select().where(OptOut.mailing_list == federation.board_list))


def next_post_reaches(engine, sink: Sink) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(distribute(engine, sink, subject="Sortie suivante"))


def test_a_yahoo_cfl_report_at_the_feedback_address_unsubscribes_the_complainer(
        start_engine, federation: Federation, sink: Sink, frozen) -> None:
    engine = start_engine()
    copies = distribute(engine, sink)
    before = len(sink.handler.received)
    assert deliver(engine, FBL, yahoo_cfl(copies[ELODIE])) == {}
    assert left(federation) == [(ELODIE, "complaint")]
    [event] = BounceEvent.select()
    assert (event.source, event.kind, event.email_key, event.weight, event.diagnostic) == (
        "arf", "complaint", ELODIE, 0.0, "abuse")
    assert event.message_id == Message.get().id and event.mailing_list_id == federation.board_list.id
    assert Bounce.select().count() == 0  # a complaint is no bounce
    assert [a.action for a in AuditEvent.select()] == ["list.left"]
    assert len(sink.handler.received) == before  # nobody is mailed about it, the member least of all
    # The role-derived list's next post skips her: the family address only.
    assert next_post_reaches(engine, sink) == [FAMILY]


def test_a_signal_spam_report_at_the_return_path_is_a_complaint_not_a_bounce(
        start_engine, federation: Federation, sink: Sink, frozen) -> None:
    engine = start_engine()
    copies = distribute(engine, sink)
    family = copies[FAMILY]
    assert deliver(engine, family.mail_from.strip("<>"), signal_spam(family)) == {}
    # The shared family copy's token names both members: both leave, as the one-click link would do.
    assert left(federation) == [(FAMILY, "complaint"), (FAMILY.lower(), "complaint")]
    [event] = BounceEvent.select()
    assert (event.source, event.kind, event.weight) == ("arf", "complaint", 0.0)
    assert Bounce.select().count() == 0
    assert next_post_reaches(engine, sink) == [ELODIE]


def test_a_plain_dsn_at_the_return_path_is_still_a_bounce(start_engine, federation: Federation, sink: Sink,
                                                         frozen) -> None:
    from tests.engine.test_bounces_pipeline import CORPUS, PLACEHOLDER

    engine = start_engine()
    verp = distribute(engine, sink)[ELODIE].mail_from.strip("<>")
    dsn = (CORPUS / "postfix-5.1.1-orange.eml").read_bytes().replace(PLACEHOLDER, verp.encode())
    assert deliver(engine, verp, dsn.replace(b"\n", b"\r\n")) == {}
    assert Bounce.get(Bounce.email_key == ELODIE).score == 1.0 and left(federation) == []
    assert [(e.source, e.kind) for e in BounceEvent.select()] == [("dsn", "hard")]


def test_a_copy_without_list_unsubscribe_is_named_by_its_signed_return_path(
        start_engine, federation: Federation, sink: Sink, frozen) -> None:
    engine = start_engine()
    copy = distribute(engine, sink)[ELODIE]
    stripped = re.sub(rb"(?mi)^List-Unsubscribe:.*(\r\n[ \t].*)*\r\n", b"", copy.data)
    assert b"/u/" not in stripped.split(b"\r\n\r\n", 1)[0]
    data = signal_spam(Received(copy.mail_from, copy.rcpt_tos, stripped, []))
    assert deliver(engine, FBL, data) == {}
    assert left(federation) == [(ELODIE, "complaint")]
    assert deliver(engine, FBL, data) == {}  # the same report again: nothing more to record
    assert left(federation) == [(ELODIE, "complaint")] and BounceEvent.select().count() == 2
    assert AuditEvent.select().count() == 1


def tampered(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def test_a_tampered_or_foreign_report_changes_nothing_and_goes_to_the_administrator(
        start_engine, federation: Federation, sink: Sink, frozen) -> None:
    engine = start_engine()
    copy = distribute(engine, sink)[ELODIE]
    data = signal_spam(copy)
    for token in set(re.findall(rb"/u/([\w\-]+\.[\w\-]+)", data)) | set(re.findall(rb"subject=([\w\-]+\.[\w\-]+)", data)):
        data = data.replace(token, tampered(token.decode()).encode())
    verp_token = copy.mail_from.partition("+")[2].partition("@")[0]
    data = data.replace(verp_token.encode(), tampered(verp_token).encode())
    before = len(sink.handler.received)
    assert deliver(engine, FBL, data) == {}
    assert left(federation) == [] and Bounce.select().count() == 0
    [event] = BounceEvent.select()
    assert (event.source, event.kind, event.forwarded) == ("arf", "unknown", True)
    [forwarded] = sink.handler.received[before:]
    assert forwarded.rcpt_tos == ["webmaster@example.fr"] and forwarded.mail_from == "<>"
    assert "Rapport de plainte non reconnu" in str(forwarded.message["Subject"])
    # A genuine report sent to the feedback address of another of our domains names none of its lists.
    factories.domain("listes.autre.example", structure=federation.region)
    assert deliver(engine, "fbl@listes.autre.example", yahoo_cfl(copy)) == {}
    assert left(federation) == []
    assert [(e.kind, e.mailing_list_id) for e in BounceEvent.select().order_by(BounceEvent.id)] == [
        ("unknown", None), ("unknown", None)]
    # Sent to both feedback addresses in one transaction, each domain reads it for itself.
    assert deliver(engine, ["fbl@listes.autre.example", FBL], yahoo_cfl(copy)) == {}
    assert left(federation) == [(ELODIE, "complaint")]
    OptOut.delete().execute()
    BounceEvent.delete().where(BounceEvent.kind == "complaint").execute()
    # Forged reports are forwarded within the daily limit of unrecognised bounces, then only kept.
    for _ in range(OWNER_FORWARDS_PER_DAY + 2):
        deliver(engine, FBL, data)
    assert len(sink.handler.received) - before == OWNER_FORWARDS_PER_DAY
    assert left(federation) == []


def test_the_feedback_address_exists_only_on_our_enabled_domains(start_engine, federation: Federation,
                                                                 sink: Sink) -> None:
    engine = start_engine()
    for address in ("fbl@example.com", "fbl@listes.example.fr.evil.example"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            deliver(engine, address, b"Subject: x\r\n\r\nx\r\n")
        assert refused.value.recipients[address][0] == 550  # never a relay
    off = factories.domain("listes.off.example", structure=federation.region, enabled=False)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        deliver(engine, f"fbl@{off.name}", b"Subject: x\r\n\r\nx\r\n")


# --- reading reports (no database) ---

def _corpus(name: str) -> bytes:
    from tests.engine.test_bounces_pipeline import CORPUS

    return (CORPUS / name).read_bytes()


def test_a_report_gives_only_the_tokens_the_engine_signed_into_the_copy() -> None:
    from engine.bounces import arf, dsn

    yahoo = arf.read(dsn.parse(_corpus("arf-yahoo-cfl.eml")))
    assert yahoo == arf.Report("abuse", ("WzEsWzFdXQ.3fKpl0dOaQ1vV8Tg5rYmF0Zh2sc",), (),
                               "<sortie.cassis.1@example.fr>")
    orange = arf.read(dsn.parse(_corpus("arf-signal-spam-orange.eml")))
    assert orange.unsubscribe_tokens == ("WzEsWzIsM11d.Xq1d0s9kVqQ2mC5dD3oZp7tLw0M",)
    assert orange.verp_tokens == ("2a.5b1c9e04d7",)  # Original-Mail-From and Return-Path name the same copy
    assert "jean.martin" not in repr(orange)  # the recipient the report writes is never read


def test_a_bounce_of_a_post_that_carried_a_report_is_still_a_bounce() -> None:
    from email import message_from_bytes, policy
    from email.message import EmailMessage

    from engine.bounces.classify import Kind, classify

    dsn = _corpus("postfix-5.1.1-orange.eml")
    assert classify(dsn).kind == Kind.HARD
    # The returned copy (message/rfc822 inside the DSN) is a post that attached an ARF report.
    carried = EmailMessage()
    carried["Subject"] = "Fwd: un signalement"
    carried.set_content("voir la pièce jointe")
    carried.add_attachment(message_from_bytes(_corpus("arf-yahoo-cfl.eml"), policy=policy.default))
    boundary = dsn.split(b'boundary="', 1)[1].split(b'"', 1)[0]
    closing = b"--" + boundary + b"--"
    wrapped = dsn.replace(closing, b"--" + boundary + b"\nContent-Type: message/rfc822\n\n" + carried.as_bytes()
                          + b"\n" + closing)
    assert b"message/feedback-report" in wrapped and b"report-type=feedback-report" in wrapped
    assert classify(wrapped).kind == Kind.HARD


def test_a_report_labelled_mixed_is_still_a_complaint_and_hostile_ones_are_bounded() -> None:
    from engine.bounces import arf, dsn
    from engine.bounces.classify import Kind, classify

    mixed = _corpus("arf-yahoo-cfl.eml").replace(b"multipart/report; report-type=feedback-report;",
                                                 b"multipart/mixed;")
    assert classify(mixed).kind == Kind.COMPLAINT
    many = _corpus("arf-yahoo-cfl.eml").replace(
        b"List-Unsubscribe-Post:", b"".join(b"List-Unsubscribe: <https://x/u/a%d.b>\n" % i for i in range(5000))
        + b"List-Unsubscribe-Post:")
    assert len(arf.read(dsn.parse(many)).unsubscribe_tokens) == arf.MAX_TOKENS
    assert classify(b"Content-Type: multipart/report; report-type=feedback-report; boundary=x\n\n--x--\n").kind \
        == Kind.COMPLAINT  # an empty report is a complaint naming nothing: the owner reads it
