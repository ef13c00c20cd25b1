"""A recording SMTP server on loopback (aiosmtpd) standing in for the smarthost in tests.

It keeps every envelope and message it accepts; ``script`` decides the reply to each RCPT (for
451-then-250 or 550 tests). It counts concurrent sessions, as a receiving provider would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    mail_options: list[str]

    @property
    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.data)  # type: ignore[return-value]


@dataclass
class SinkHandler:
    script: Callable[[str, int], str] | None = None  # (recipient, attempt number) -> reply for RCPT
    delay: float = 0.0  # seconds spent on each DATA (a slow receiver)
    pipelining: bool = True  # advertise RFC 2920 (aiosmtpd reads pipelined commands in order anyway)
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    drop_at_mail: int = 0  # close the next N sessions at MAIL, without a reply (a relay that died)
    domain_limit: dict[str, int] = field(default_factory=dict)  # a provider: at most N sessions at once, else 421
    domain_sessions: dict[str, int] = field(default_factory=dict)  # sessions that sent to the domain, now
    max_domain_sessions: dict[str, int] = field(default_factory=dict)
    max_per_session: dict[str, int] = field(default_factory=dict)  # most copies to the domain in one session
    refusals: list[str] = field(default_factory=list)  # the 421s given
    noops: int = 0
    sessions: int = 0
    max_sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            self.attempts[address] = attempt = self.attempts.get(address, 0) + 1
            refusal = self._count_domain(session, address.rpartition("@")[2].lower())
        if refusal:
            return refusal
        reply = self.script(address, attempt) if self.script else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          envelope.original_content or b"", list(envelope.mail_options)))
        return "250 2.0.0 Ok: queued"

    def _count_domain(self, session: Session, domain: str) -> str:
        """A session counts for a domain from its first copy to it until it ends (as a provider sees it)."""
        counts = session.__dict__.setdefault("domains", {})
        if domain not in counts:
            counts[domain] = 0
            self.domain_sessions[domain] = now = self.domain_sessions.get(domain, 0) + 1
            self.max_domain_sessions[domain] = max(self.max_domain_sessions.get(domain, 0), now)
        counts[domain] += 1
        self.max_per_session[domain] = max(self.max_per_session.get(domain, 0), counts[domain])
        limit = self.domain_limit.get(domain)
        if limit is not None and self.domain_sessions[domain] > limit:
            self.refusals.append(domain)
            return "421 4.7.0 Too many connections from your host, slow down"
        return ""

    def session_ended(self, session: Session) -> None:
        with self.lock:
            for domain in session.__dict__.get("domains", {}):
                self.domain_sessions[domain] -= 1

    def by_recipient(self) -> dict[str, list[Received]]:
        found: dict[str, list[Received]] = {}
        for item in self.received:
            for rcpt in item.rcpt_tos:
                found.setdefault(rcpt, []).append(item)
        return found


class _CountingSMTP(SMTP):
    async def smtp_MAIL(self, arg: str) -> None:
        handler: SinkHandler = self.event_handler
        with handler.lock:
            drop = handler.drop_at_mail > 0
            handler.drop_at_mail -= drop
        if drop:
            assert self.transport is not None
            self.transport.close()
            return
        await super().smtp_MAIL(arg)

    async def smtp_NOOP(self, arg: str) -> None:
        handler: SinkHandler = self.event_handler
        with handler.lock:
            handler.noops += 1
        await super().smtp_NOOP(arg)

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        handler: SinkHandler = self.event_handler
        with handler.lock:
            handler.sessions += 1
            handler.max_sessions = max(handler.max_sessions, handler.sessions)
        super().connection_made(transport)

    def connection_lost(self, exc) -> None:  # type: ignore[no-untyped-def]
        handler: SinkHandler = self.event_handler
        with handler.lock:
            handler.sessions -= 1
        if self.session is not None:
            handler.session_ended(self.session)
        super().connection_lost(exc)


def reserve() -> socket.socket:
    """A loopback socket bound to a port of its own and not listening: connections to it are refused
    until a server listens on it (``BoundController(sock=...)``); no other process can take the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class BoundController(Controller):
    """An aiosmtpd controller on a socket bound before it starts (not a port picked, then bound later).

    aiosmtpd's own ``port=0`` is unusable (its readiness check connects to the port it was given).
    """

    def __init__(self, handler: object, *, sock: socket.socket | None = None, **options: object) -> None:
        self.sock = sock or reserve()
        super().__init__(handler, hostname="127.0.0.1", port=self.sock.getsockname()[1], ready_timeout=10,
                         **options)

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(self._factory_invoker, sock=self.sock, ssl=self.ssl_context)


class Sink(BoundController):
    """``idle_timeout``: seconds after which a silent session is closed (Postfix's ``smtpd_timeout``)."""

    def __init__(self, handler: SinkHandler, smtputf8: bool = True, *, sock: socket.socket | None = None,
                 idle_timeout: float = 300) -> None:
        self.smtputf8 = smtputf8
        self.idle_timeout = idle_timeout
        super().__init__(handler, sock=sock)

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, enable_SMTPUTF8=self.smtputf8, decode_data=False,
                             timeout=self.idle_timeout)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
