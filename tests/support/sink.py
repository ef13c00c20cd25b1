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

    def by_recipient(self) -> dict[str, list[Received]]:
        found: dict[str, list[Received]] = {}
        for item in self.received:
            for rcpt in item.rcpt_tos:
                found.setdefault(rcpt, []).append(item)
        return found


class _CountingSMTP(SMTP):
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
    def __init__(self, handler: SinkHandler, smtputf8: bool = True, *, sock: socket.socket | None = None) -> None:
        self.smtputf8 = smtputf8
        super().__init__(handler, sock=sock)

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, enable_SMTPUTF8=self.smtputf8, decode_data=False)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"
