"""Where copies go: long-lived pipelining SMTP connections to the smarthost, or the local capture.

A transport runs ``lanes`` concurrently; each lane takes copies from the worker until none is left
and reports each copy's reply. Only ``smtp`` speaks SMTP; this module decides on connections.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from engine.config import Settings
from engine.outbound import mail, smarthost
from engine.outbound.smtp import Connection, Item, Reply, SmtpError


class Transport:
    """Where copies go. ``lanes`` run concurrently; each takes copies until ``take`` returns None."""

    lanes = 1
    last_error = ""
    dot_stuffed = True  # copies come in SMTP DATA form (RFC 5321 §4.5.2)

    async def run_lane(self, lane: int, take: Callable[[], Item | None], done: Callable[[Item, Reply], None]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class SmtpTransport(Transport):
    """Long-lived pipelining connections to the smarthost, one per lane.

    A connection the server closed while it was idle is replaced before use; one left idle longer
    than ``idle_check`` seconds is probed with NOOP first (RFC 5321 §4.5.3.2.7: servers drop idle
    sessions, Postfix after ``smtpd_timeout``). Copies whose content never left on a connection
    that died are sent again at once on a new one.
    """

    def __init__(self, url: str, lanes: int, helo: str | None = None, idle_check: float = 30.0) -> None:
        self.relay = smarthost.parse(url)
        self.tls_context = self.relay.tls_context()
        self.helo = helo or socket.getfqdn()
        self.lanes = lanes
        self.idle_check = idle_check
        self.connections: dict[int, Connection] = {}

    async def _connection(self, lane: int) -> Connection:
        connection = self.connections.get(lane)
        if connection is not None and (connection.closed or (connection.idle_for() > self.idle_check
                                                             and not await connection.probe())):
            self._drop(lane)
            connection = None
        if connection is None:
            relay = self.relay
            connection = await Connection.open(relay.host, relay.port, helo=self.helo, starttls=relay.starttls,
                                               implicit_tls=relay.implicit_tls, tls_context=self.tls_context,
                                               username=relay.username, password=relay.password)
            self.connections[lane] = connection
        return connection

    def _drop(self, lane: int) -> None:
        dropped = self.connections.pop(lane, None)
        if dropped is not None:
            dropped.abort()

    async def run_lane(self, lane: int, take: Callable[[], Item | None], done: Callable[[Item, Reply], None]) -> None:
        retry: list[Item] = []  # copies put back: their connection died before their content left

        def taking() -> Item | None:
            return retry.pop(0) if retry else take()

        failures = 0
        while failures < 2:  # two failures in a row without a reply: leave the rest for later
            answered = 0
            try:
                connection = await self._connection(lane)
                answered = connection.answered
                await connection.send_stream(taking, lambda item, reply: self._done(item, reply, done))
                return
            except SmtpError as exc:
                self.last_error = f"4.4.2 {exc}"
                retry[:0] = exc.unsent
                failed = self.connections.get(lane)
                progressed = failed is not None and failed.answered > answered
                failures = 0 if progressed else failures + 1
                self._drop(lane)

    def _done(self, item: Item, reply: Reply, done: Callable[[Item, Reply], None]) -> None:
        if reply.code == 421:  # the server closes the session (RFC 5321 §3.8)
            raise SmtpError(f"server closing: {reply}")
        done(item, reply)

    async def close(self) -> None:
        for connection in list(self.connections.values()):
            await connection.quit()
        self.connections.clear()


class CaptureTransport(Transport):
    """The embedded default: every copy lands in the capture Maildir, as a mailbox would store it."""

    dot_stuffed = False  # a mailbox stores the message itself

    def __init__(self, settings: Settings) -> None:
        self.folder = settings.capture_dir

    async def run_lane(self, lane: int, take: Callable[[], Item | None], done: Callable[[Item, Reply], None]) -> None:
        while (item := take()) is not None:
            key, sender, recipient, data = item
            envelope = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
            stored = mail.capture(self.folder, envelope + data)
            done(item, Reply(250, f"2.0.0 captured as {stored}"))


def make_transport(settings: Settings) -> Transport:
    if settings.smarthost:
        return SmtpTransport(settings.smarthost, settings.delivery_connections,
                             idle_check=settings.delivery_idle_check.total_seconds())
    return CaptureTransport(settings)
