"""Where copies go: pipelining SMTP connections to the smarthost, or the local capture.

A transport runs ``lanes`` concurrently; each lane asks the batch's ``Dispatch`` for sessions and
sends their copies, reporting each reply to ``done``. Only ``smtp`` speaks SMTP; this module decides
on connections: long-lived ones for the shared pool, dedicated ones for throttled groups.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from engine.config import Settings
from engine.outbound import mail, smarthost
from engine.outbound.dispatch import Dispatch, Session
from engine.outbound.smtp import Connection, Item, Reply, SmtpError
from engine.outbound.throttle import is_slow_down

Done = Callable[[Item, Reply], None]


class Transport:
    """Where copies go. ``lanes`` run concurrently; each takes sessions from the dispatch until none is left."""

    lanes = 1
    last_error = ""
    dot_stuffed = True  # copies come in SMTP DATA form (RFC 5321 §4.5.2)

    async def run_lane(self, lane: int, dispatch: Dispatch, done: Done) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class SmtpTransport(Transport):
    """Pipelining connections to the smarthost: one long-lived per lane, plus sessions for throttled groups.

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

    async def _open(self) -> Connection:
        relay = self.relay
        return await Connection.open(relay.host, relay.port, helo=self.helo, starttls=relay.starttls,
                                     implicit_tls=relay.implicit_tls, tls_context=self.tls_context,
                                     username=relay.username, password=relay.password)

    async def _connection(self, lane: int) -> Connection:
        connection = self.connections.get(lane)
        if connection is not None and (connection.closed or (connection.idle_for() > self.idle_check
                                                             and not await connection.probe())):
            self._drop(lane)
            connection = None
        if connection is None:
            connection = self.connections[lane] = await self._open()
        return connection

    def _drop(self, lane: int) -> None:
        dropped = self.connections.pop(lane, None)
        if dropped is not None:
            dropped.abort()

    async def run_lane(self, lane: int, dispatch: Dispatch, done: Done) -> None:
        failures = 0
        while failures < 2:  # two failures in a row without a reply: leave the rest for later
            session = dispatch.open(lane)
            if session is None:
                if not await dispatch.wait():
                    return
                continue
            try:
                progressed = await self._carry(lane, session, done)
            finally:
                dispatch.close(session)
            failures = 0 if progressed else failures + 1

    async def _carry(self, lane: int, session: Session, done: Done) -> bool:
        """Send a session's copies; False when its connection failed before any reply."""
        connection: Connection | None = None
        answered = 0
        try:
            connection = await (self._open() if session.dedicated else self._connection(lane))
            answered = connection.answered
            await connection.send_stream(session.take, lambda item, reply: self._done(session, item, reply, done))
        except SmtpError as exc:
            self.last_error = f"4.4.2 {exc}"
            session.put_back(exc.unsent)
            if connection is not None:
                connection.abort()
            if not session.dedicated:
                self.connections.pop(lane, None)
            return connection is not None and connection.answered > answered
        if session.dedicated:
            await connection.quit()  # a throttled group's session ends with its share (per_connection)
        return True

    def _done(self, session: Session, item: Item, reply: Reply, done: Done) -> None:
        if reply.code >= 400 and not reply.local and is_slow_down(reply.code, reply.text):
            session.dispatch.slow(item[0])  # no more copies of this copy's group in this batch
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

    async def run_lane(self, lane: int, dispatch: Dispatch, done: Done) -> None:
        while (item := dispatch.take_any()) is not None:
            key, sender, recipient, data = item
            envelope = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
            stored = mail.capture(self.folder, envelope + data)
            done(item, Reply(250, f"2.0.0 captured as {stored}"))


def make_transport(settings: Settings) -> Transport:
    if settings.smarthost:
        return SmtpTransport(settings.smarthost, settings.delivery_connections,
                             idle_check=settings.delivery_idle_check.total_seconds())
    return CaptureTransport(settings)
