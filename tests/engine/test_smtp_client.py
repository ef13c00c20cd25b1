"""The delivery client against servers that demand STARTTLS and AUTH, lack PIPELINING or SMTPUTF8."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from engine.outbound.dispatch import Dispatch
from engine.outbound.outbox import Claimed
from engine.outbound.smtp import Connection, Reply, dot_stuff
from engine.outbound.throttle import UNLIMITED
from engine.outbound.transport import SmtpTransport
from tests.support import aio
from tests.support.sink import BoundController, SinkHandler

COPY = dot_stuff(b"From: a@example.fr\r\nSubject: essai\r\n\r\nBonjour\r\n.ligne avec un point\r\n")


class _Server(BoundController):
    def __init__(self, handler: SinkHandler, **smtp_options: object) -> None:
        self.smtp_options = smtp_options
        super().__init__(handler)

    def factory(self) -> SMTP:
        return SMTP(self.handler, **self.smtp_options)  # type: ignore[arg-type]


def _authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"relay", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


async def _deliver(transport: SmtpTransport, items: list[tuple[int, str, str, bytes]]) -> list[tuple[int, Reply]]:
    results: list[tuple[int, Reply]] = []
    copies = {item[0]: item for item in items}
    dispatch = Dispatch(lambda claim: copies[claim.id], lambda: False)
    dispatch.add(UNLIMITED, [Claimed(key, 0, recipient, "", "", 1) for key, _, recipient, _ in items])
    await transport.run_lane(0, dispatch, lambda item, reply: results.append((item[0], reply)))
    await transport.close()
    return results


def test_starttls_and_auth_plain_through_a_private_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    handler = SinkHandler()
    server = _Server(handler, tls_context=context, require_starttls=True, auth_required=True,
                     authenticator=_authenticator)
    server.start()
    try:
        url = f"smtp://relay:s3cret@127.0.0.1:{server.port}?starttls=1&cafile={ca_file}"
        results = aio.run(_deliver(SmtpTransport(url, 1), [
            (1, "l-bounces+1.aa@listes.example.fr", "one@example.org", COPY),
            (2, "l-bounces+2.bb@listes.example.fr", "two@example.org", COPY)]))
        assert [(key, reply.code) for key, reply in results] == [(1, 250), (2, 250)]
        assert sorted(r.rcpt_tos[0] for r in handler.received) == ["one@example.org", "two@example.org"]
        assert handler.received[0].data.endswith(b"\r\n.ligne avec un point\r\n")  # un-stuffed by the server
        wrong = f"smtp://relay:wrong@127.0.0.1:{server.port}?starttls=1&cafile={ca_file}"
        results = aio.run(_deliver(SmtpTransport(wrong, 1), [(3, "a@b.c", "three@example.org", COPY)]))
        assert results == []  # no session: the copy stays without reply, the worker defers it
        untrusted = f"smtp://relay:s3cret@127.0.0.1:{server.port}?starttls=1"
        assert aio.run(_deliver(SmtpTransport(untrusted, 1), [(4, "a@b.c", "x@example.org", COPY)])) == []
    finally:
        server.stop()


class _NoPipelining(SMTP):
    async def smtp_EHLO(self, hostname: str) -> None:  # the same server, without the PIPELINING keyword
        await super().smtp_EHLO(hostname)


def test_a_server_without_pipelining_gets_one_command_at_a_time_and_refusals_per_recipient() -> None:
    def script(address: str, attempt: int) -> str:
        return "550 5.1.1 unknown" if address.startswith("bad") else "250 OK"

    handler = SinkHandler(script=script)
    server = _Server(handler, enable_SMTPUTF8=False)
    server.start()

    async def run() -> tuple[bool, list[tuple[int, int]]]:
        connection = await Connection.open("127.0.0.1", server.port)
        connection.extensions.pop("PIPELINING", None)
        got: list[tuple[int, int]] = []
        items = [(1, "s@l.fr", "good@example.org", COPY), (2, "s@l.fr", "bad@example.org", COPY),
                 (3, "s@l.fr", "jérôme@exemple.fr", COPY), (4, "s@l.fr", "good2@example.org", COPY)]
        await connection.send_stream(lambda: items.pop(0) if items else None,
                                     lambda item, reply: got.append((item[0], reply.code)))
        await connection.quit()
        return connection.pipelining, got

    try:
        pipelining, got = aio.run(run())
    finally:
        server.stop()
    assert not pipelining
    # The non-ASCII address cannot go to a server without SMTPUTF8 (RFC 6531): 553 5.6.7, the others go on.
    assert got == [(1, 250), (2, 550), (3, 553), (4, 250)]
    assert sorted(r.rcpt_tos[0] for r in handler.received) == ["good2@example.org", "good@example.org"]


@pytest.mark.parametrize("smtputf8", [True])
def test_pipelined_stream_keeps_going_after_a_refused_recipient(smtputf8: bool) -> None:
    handler = SinkHandler(script=lambda address, attempt: "550 5.1.1 unknown" if "bad" in address else "250 OK")
    server = _Server(handler, enable_SMTPUTF8=smtputf8)
    server.start()

    async def run() -> list[tuple[int, int]]:
        connection = await Connection.open("127.0.0.1", server.port)
        assert connection.pipelining
        items = [(n, "s@l.fr", f"{'bad' if n % 3 == 0 else 'ok'}{n}@example.org", COPY) for n in range(1, 10)]
        items.append((10, "s@l.fr", "jérôme@exemple.fr", COPY))
        got: list[tuple[int, int]] = []
        await connection.send_stream(lambda: items.pop(0) if items else None,
                                     lambda item, reply: got.append((item[0], reply.code)))
        await connection.quit()
        return got

    try:
        got = aio.run(run())
    finally:
        server.stop()
    assert sorted(got) == [(n, 550 if n % 3 == 0 else 250) for n in range(1, 10)] + [(10, 250)]
    [utf8] = [r for r in handler.received if r.rcpt_tos == ["jérôme@exemple.fr"]]
    assert "SMTPUTF8" in utf8.mail_options
    assert len(handler.received) == 7


IDN = "xn--plonge-13-f4a.fr"  # the A-label of plongée-13.fr (IDNA2008)


@pytest.mark.parametrize("smtputf8", [False, True])
def test_an_internationalised_domain_goes_out_as_its_a_label_with_or_without_smtputf8(smtputf8: bool) -> None:
    """DELIVERABILITY.md §3.2 (d), RFC 5890/5891: the A-label in MAIL and RCPT, SMTPUTF8 offered or not, so an
    ASCII local part needs SMTPUTF8 at no hop; a UTF-8 local part still needs it (553 5.6.7 without); a domain
    IDNA2008 refuses fails that copy alone, for good (5.1.3 / 5.1.7); the stream goes on."""
    handler = SinkHandler()
    server = _Server(handler, enable_SMTPUTF8=smtputf8)
    server.start()
    items = [(1, "l-bounces+1.aa@listes.example.fr", "jerome@plongée-13.fr", COPY),
             (2, "l-bounces+2.bb@listes.example.fr", "Jérôme.Bis@Plongée-13.FR", COPY),
             (3, "l-bounces+3.cc@listes.example.fr", "x@exa☃mple.fr", COPY),  # U+2603: not in IDNA2008
             (4, "l-bounces+4.dd@listes.plongée.fr", "ok@example.org", COPY),
             (5, "l-bounces+5.ee@listes.exa☃mple.fr", "ok5@example.org", COPY),
             (6, "l-bounces+6.ff@listes.example.fr", "Famille.Martin@plongée-13.fr", COPY)]

    async def run() -> list[tuple[int, Reply]]:
        connection = await Connection.open("127.0.0.1", server.port)
        got: list[tuple[int, Reply]] = []
        await connection.send_stream(lambda: items.pop(0) if items else None,
                                     lambda item, reply: got.append((item[0], reply)))
        await connection.quit()
        return got

    try:
        got = dict(aio.run(run()))
    finally:
        server.stop()
    assert {key: reply.code for key, reply in got.items()} == {1: 250, 2: 250 if smtputf8 else 553, 3: 553, 4: 250,
                                                               5: 553, 6: 250}
    assert got[3].text.startswith("5.1.3 ") and "exa☃mple.fr" in got[3].text and "IDNA2008" in got[3].text
    assert got[5].text.startswith("5.1.7 ") and got[3].local and got[5].local
    envelopes = {r.rcpt_tos[0]: r for r in handler.received}
    assert envelopes[f"jerome@{IDN}"].mail_options == []  # no SMTPUTF8 needed: the envelope is ASCII
    assert envelopes[f"Famille.Martin@{IDN}"].mail_options == []  # the local part as stored, the domain's A-label
    assert envelopes["ok@example.org"].mail_from == "l-bounces+4.dd@listes.xn--plonge-fva.fr"
    if smtputf8:
        assert "SMTPUTF8" in envelopes[f"Jérôme.Bis@{IDN}"].mail_options
    else:
        assert got[2].text.startswith("5.6.7 Non-ASCII local part") and got[2].local
    assert len(handler.received) == (4 if smtputf8 else 3)
    assert not any("plongée" in r for r in envelopes)  # no U-label ever reaches the wire
