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
