"""Security review, issue 11 finding 2 (poison messages): the MIME torture test, over SMTP, against the engine.

Each hostile or careless post gets a precise reply at DATA or is delivered as valid copies, and a
well-formed post sent right after each one still reaches every recipient: nothing unrenderable
gets past the intake to stall delivery.
"""

from __future__ import annotations

import base64
import re
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser

import pytest

from engine.posting import mime
from engine.posting.models import Message
from tests.engine.conftest import Federation, wait_until
from tests.support.sink import Sink

LIST = "comite_directeur.comite@listes.example.fr"
AUTHOR = "elodie.dupre@example.fr"
RECIPIENTS = {"elodie.dupre@example.fr", "Famille.Martin@example.fr"}
HEAD = (b"From: =?utf-8?q?=C3=89lodie_Dupr=C3=A9?= <elodie.dupre@example.fr>\r\n"
        b"To: comite_directeur.comite@listes.example.fr\r\n")


def _post(subject: bytes, rest: bytes) -> bytes:
    return HEAD + b"Subject: " + subject + b"\r\n" + rest


def _multipart(ctype: bytes, body: bytes, subject: bytes = b"multipart") -> bytes:
    return _post(subject, b"MIME-Version: 1.0\r\nContent-Type: " + ctype + b"\r\n\r\n" + body)


def _nested(levels: int) -> bytes:
    inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\nau fond\r\n"
    for level in range(levels):
        b = b"level%d" % level
        inner = (b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n" + inner
                 + b"\r\n--" + b + b"--\r\n")
    return _post(b"nested %d" % levels, b"MIME-Version: 1.0\r\n" + inner)


def _rfc822_nested(levels: int) -> bytes:
    inner = [b"Content-Type: text/plain\r\n\r\nau fond\r\n"]
    inner += [b"Content-Type: message/rfc822\r\n\r\n"] * levels
    return _post(b"rfc822 nested", b"MIME-Version: 1.0\r\n" + b"".join(reversed(inner)))


def _parts(count: int) -> bytes:
    body = b"".join(b"--P\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n for n in range(count)) + b"--P--\r\n"
    return _multipart(b"multipart/mixed; boundary=P", body, b"many parts")


def _with_attachment(attachment_headers: bytes, attachment: bytes) -> bytes:
    return _multipart(b'multipart/mixed; boundary="B"',
                      b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nvoir la pi\xc3\xa8ce jointe\r\n"
                      b"--B\r\n" + attachment_headers + b"\r\n" + attachment + b"\r\n--B--\r\n", b"attachment")


def _signed(inner_body: bytes) -> bytes:
    return _multipart(b'multipart/signed; protocol="application/pkcs7-signature"; boundary="S"',
                      b"--S\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + inner_body + b"\r\n"
                      b"--S\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                      b"MIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--S--\r\n", b"signed")


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: str  # "delivered", or the reply code and a piece of its text: "554 nested"
    check: Callable[[list[bytes]], None] | None = None  # more about the copies when delivered


def _copies_keep(needle: bytes) -> Callable[[list[bytes]], None]:
    def check(copies: list[bytes]) -> None:
        assert all(needle in copy for copy in copies), needle
    return check


def _attachment_decodes_to(expected: bytes) -> Callable[[list[bytes]], None]:
    def check(copies: list[bytes]) -> None:
        for copy in copies:
            message = BytesParser(policy=policy.default).parsebytes(copy)
            payloads = [part.get_payload(decode=True) for part in message.walk() if not part.is_multipart()]
            assert expected in payloads
    return check


def _subject_is_one_header(copies: list[bytes]) -> None:
    for copy in copies:
        head = copy.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc:" not in head and head.count(b"\r\nSubject: [CD] ") == 1


LONG = b"x" * 999  # the longest line aiosmtpd takes: one octet over RFC 5322's 998
CASES = [
    Case("multipart without boundary", _multipart(b"multipart/mixed", b"pas de fronti\xc3\xa8re\r\n"), "delivered",
         _copies_keep(b"\r\nContent-Type: multipart/mixed\r\n\r\npas de fronti\xc3\xa8re\r\n")),
    Case("multipart with an empty boundary", _multipart(b'multipart/mixed; boundary=""',
                                                        b"--\r\nContent-Type: text/plain\r\n\r\nx\r\n----\r\n"),
         "delivered", _copies_keep(b'Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n')),
    Case("invalid unquoted boundary", _multipart(b"multipart/mixed; boundary=a=b?c",
                                                 b"--a=b?c\r\nContent-Type: text/plain\r\n\r\nx\r\n--a=b?c--\r\n"),
         "delivered"),
    Case("encoded CR LF in the subject under a prefix", _post(b"=?utf-8?q?Sortie=0D=0ABcc:_victim@example.org?=",
                                                              b"\r\nbonjour\r\n"), "delivered", _subject_is_one_header),
    Case("unquoted comma in the author's name", (b"From: Dupr\xc3\xa9, \xc3\x89lodie <" + AUTHOR.encode()
                                                 + b">\r\nSubject: virgule\r\n\r\nbonjour\r\n"), "delivered"),
    Case("encoded CR LF in the author's display name", (b"From: =?utf-8?q?=C3=89lodie=0D=0AX:_y?= <" + AUTHOR.encode()
                                                        + b">\r\nSubject: nom\r\n\r\nbonjour\r\n"), "delivered"),
    Case("multiparts nested 100 deep", _nested(mime.MAX_DEPTH), "delivered", _copies_keep(b"au fond")),
    Case("multiparts nested 101 deep", _nested(mime.MAX_DEPTH + 1), "554 nested more than 100 levels"),
    Case("message/rfc822 nested 2,000 deep", _rfc822_nested(2000), "554 nested more than 100 levels"),
    Case("bad base64", _post(b"base64", b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                                        b"!!!pas du base64@@@=\r\nAAA\r\n"), "delivered"),
    Case("broken RFC 2047 words", _post(b"=?utf-8?b?####?= =?x-inconnu?q?a?= =?utf-8?q?=ZZ?=", b"\r\ntexte\r\n"),
         "delivered"),
    Case("NUL byte in the text", _post(b"nul", b"\r\navant\x00apr\xc3\xa8s\r\n"), "delivered", _copies_keep(b"=00")),
    Case("NUL byte in an 8-bit attachment", _with_attachment(
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n", b"\x01\x00\x02\xff"),
         "delivered", _attachment_decodes_to(b"\x01\x00\x02\xff")),
    Case("binary attachment", _with_attachment(
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n", b"\x89PNG\x1a"),
         "delivered", _attachment_decodes_to(b"\x89PNG\x1a")),
    Case("NUL byte inside a signed part", _signed(b"sign\x00\xc3\xa9"), "554 NUL byte"),
    Case("line of 999 octets in the text", _post(b"long", b"\r\n" + LONG + b"\r\n"), "delivered"),
    Case("line of 999 octets in an attachment", _with_attachment(
        b"Content-Type: text/csv\r\nContent-Disposition: attachment; filename=a.csv\r\n", LONG),
         "delivered", _attachment_decodes_to(LONG)),
    Case("line of 999 octets inside a signed part", _signed(LONG), "554 a line of 999 octets"),
    Case("header line of 999 octets", _post(b"y" * (999 - len("Subject: ")), b"\r\ncorps\r\n"), "delivered"),
    Case("line of 5,000 octets", _post(b"tres long", b"\r\n" + b"z" * 5000 + b"\r\n"), "500 Line too long"),
    Case("headers and no body", _post(b"sans corps", b""), "delivered"),
    Case("empty body", _post(b"corps vide", b"\r\n"), "delivered"),
    Case("no header at all", b"\r\njuste un corps\r\n", "550 exactly one From"),
    Case("10,000 parts", _parts(10_000), "554 more than 1000 MIME parts"),
    Case("1,000 parts", _parts(999), "delivered"),
    Case("unknown charset", _post(b"klingon", b"Content-Type: text/plain; charset=x-klingon\r\n\r\nQapla\xff\r\n"),
         "delivered", _copies_keep(b"Content-Type: text/plain; charset=x-klingon\r\n\r\nQapla\xff\r\n")),
    Case("bare LF line ends", b"From: " + AUTHOR.encode() + b"\nSubject: lf\n\nligne 1\nligne 2\n", "delivered"),
    Case("bare CR inside the text", _post(b"cr", b"\r\navant\rapr\xc3\xa8s\r\n"), "delivered"),
    Case("garbage Content-Type", _post(b"ctype", b"Content-Type: ;;;===\r\n\r\nx\r\n"), "delivered"),
    Case("multipart never closed", _multipart(b"multipart/alternative; boundary=Q",
                                              b"--Q\r\nContent-Type: text/plain\r\n\r\nx\r\n"), "delivered"),
    Case("RFC 2231 parameter garbage", _post(b"2231", b"Content-Type: text/plain; charset*=utf-8''%ZZ%; name*0*=x\r\n"
                                                     b"\r\ntexte\r\n"), "delivered"),
    Case("base64 text with no line breaks", _post(b"b64", b"Content-Type: text/plain; charset=utf-8\r\n"
                                                          b"Content-Transfer-Encoding: base64\r\n\r\n"
                                                          + base64.b64encode(b"a" * 600) + b"\r\n"), "delivered"),
]


def _send(engine, raw: bytes) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=60) as client:
        try:
            refused = client.sendmail(AUTHOR, [LIST], raw)
        except smtplib.SMTPDataError as error:
            return error.smtp_code, error.smtp_error.decode("utf-8", "replace")
        except smtplib.SMTPResponseException as error:
            return error.smtp_code, error.smtp_error.decode("utf-8", "replace")
        assert refused == {}
    return 250, ""


def _copies_with(sink: Sink, token: bytes) -> dict[str, bytes]:
    return {rcpt: item.data for item in list(sink.handler.received) for rcpt in item.rcpt_tos if token in item.data}


def _valid_on_the_wire(copy: bytes) -> None:
    assert b"\x00" not in copy
    assert copy.count(b"\n") == copy.count(b"\r\n") == copy.count(b"\r")
    assert max(len(line) for line in copy.split(b"\r\n")) <= 998
    message = BytesParser(policy=policy.default).parsebytes(copy)
    assert message["List-Id"] and message["List-Unsubscribe"]
    link = re.search(r"<(https://[^>]+)>", str(message["List-Unsubscribe"]))
    assert link and link.group(1).encode() in copy.replace(b"=\r\n", b""), "the footer carries the personal link"


def test_finding_2_mime_torture_each_post_is_answered_precisely_or_delivered_and_the_next_still_goes(
        start_engine, federation: Federation, sink: Sink) -> None:
    federation.board_list.subject_prefix = "[CD]"
    federation.board_list.save()
    engine = start_engine()
    outcomes = {}
    for number, case in enumerate(CASES):
        marker = f"torture-{number}".encode()
        code, text = _send(engine, b"X-Case: " + marker + b"\r\n" + case.raw)
        outcomes[case.name] = (code, text)
        if case.expect == "delivered":
            assert code == 250, (case.name, code, text)
            wait_until(lambda m=marker: set(_copies_with(sink, m)) == RECIPIENTS, what=f"copies of {case.name}")
            copies = list(_copies_with(sink, marker).values())
            for copy in copies:
                _valid_on_the_wire(copy)
            if case.check:
                case.check(copies)
        else:
            expected_code, _, words = case.expect.partition(" ")
            assert (code, words in text) == (int(expected_code), True), (case.name, code, text)
        sentinel = f"sentinel-{number}".encode()
        assert _send(engine, _post(b"Sentinelle", b"X-Case: " + sentinel + b"\r\n\r\nbien form\xc3\xa9\r\n"))[0] == 250
        wait_until(lambda s=sentinel: set(_copies_with(sink, s)) == RECIPIENTS,
                   what=f"the well-formed post after {case.name}")
    refused = [name for name, (code, _) in outcomes.items() if code != 250]
    assert Message.select().count() == len(CASES) * 2 - len(refused)  # nothing refused was stored


@pytest.mark.parametrize("case", [c for c in CASES if c.expect.startswith("554")], ids=lambda c: c.name)
def test_finding_2_a_refused_post_is_refused_by_the_same_preparation_delivery_runs(case: Case) -> None:
    from engine.posting.render import ListInfo, prepare

    with pytest.raises(mime.Unrenderable) as refused:
        prepare(case.raw, ListInfo(1, "CD", "cd", "listes.example.fr", subject_prefix="[CD]"))
    assert case.expect.partition(" ")[2] in refused.value.reason


def test_finding_2_nothing_unrenderable_is_stored_even_what_would_be_discarded(start_engine,
                                                                                federation: Federation) -> None:
    engine = start_engine()  # a null return path would be kept as discarded, and shown on the staff pages
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=60) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail("", [LIST], _nested(mime.MAX_DEPTH + 5))
    assert refused.value.smtp_code == 554
    assert Message.select().count() == 0


def test_finding_2_control_characters_in_envelope_addresses_are_refused_at_once_never_451(
        start_engine, federation: Federation) -> None:
    # A NUL cannot be stored in PostgreSQL: it used to make every attempt fail with 451, for days.
    engine = start_engine()
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo("test")
        assert client.docmd("MAIL FROM:<elo\x00die.dupre@example.fr>")[0] == 553
        assert client.docmd("MAIL FROM:<elodie.dupre@example.fr>")[0] == 250
        for address in ("comite_directeur.comite\x00@listes.example.fr", "comite\x01directeur@listes.example.fr",
                        "comite directeur@listes.example.fr"):
            assert client.docmd(f"RCPT TO:<{address}>")[0] == 553
        assert client.docmd(f"RCPT TO:<{LIST}>")[0] == 250


def test_finding_2_a_utf8_author_is_delivered_with_the_lists_from(start_engine, federation: Federation,
                                                                  sink: Sink) -> None:
    federation.board_list.post_policy = "anyone"  # DMARC rewriting is on by default ("always")
    federation.board_list.save()
    engine = start_engine()
    raw = ("From: Éloïse Brun <éloïse@exemple.fr>\r\nTo: " + LIST + "\r\nSubject: accents\r\n\r\nbonjour\r\n").encode()
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=30) as client:
        assert client.sendmail("éloïse@exemple.fr", [LIST], raw, mail_options=["SMTPUTF8"]) == {}
    wait_until(lambda: set(_copies_with(sink, b"accents")) == RECIPIENTS, what="the copies")
    for copy in _copies_with(sink, b"accents").values():
        message = BytesParser(policy=policy.default).parsebytes(copy)
        assert message["From"].addresses[0].addr_spec == LIST
        assert "<éloïse@exemple.fr>".encode() in copy  # Reply-To and X-Original-From, as the post came (RFC 6532)
