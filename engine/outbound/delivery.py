"""Delivery: claim due copies, render each one from its message's prepared segments, send, record.

A worker claims a batch (a lease protects it), renders copies lazily inside a few concurrent lanes
that each keep one SMTP connection open (or write to the local capture), and records every reply
in one transaction per batch. A copy whose connection breaks is deferred, never dropped.
"""

from __future__ import annotations

import asyncio
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from engine import clock, tokens
from engine.bounces import verp
from engine.config import Settings
from engine.lists.models import MailingList, PostPolicy
from engine.notices import HeaderInjection
from engine.outbound import mail, smarthost
from engine.outbound.outbox import Claimed, Result, claim_due, record
from engine.outbound.smtp import Connection, Item, Reply, SmtpError
from engine.posting import dmarc, signing
from engine.posting.models import Message
from engine.posting.render import ListInfo, Personal, Prepared, prepare

RunInDb = Callable[..., Awaitable[Any]]


class PreparedMessage:
    """A message rendered once, with what every copy of it needs."""

    def __init__(self, settings: Settings, message: Message) -> None:
        mailing_list: MailingList = message.mailing_list
        domain = mailing_list.domain.name
        self.info = ListInfo(
            list_id=mailing_list.id, name=mailing_list.name, local_part=mailing_list.local_part, domain=domain,
            subject_prefix=mailing_list.subject_prefix, reply_to_list=mailing_list.reply_to == "list",
            announce_only=mailing_list.post_policy == PostPolicy.MODERATORS,
            rewrite_from=dmarc.should_rewrite(mailing_list.dmarc_mode, message.author),
            author_in_cc=mailing_list.dmarc_author_in == dmarc.AuthorIn.CC)
        self.prepared: Prepared = prepare(bytes(message.content), self.info)
        self.signer = signing.for_message(settings, message, self.prepared)  # DKIM and ARC: the copy's last step
        self.received_at: datetime = message.received_at
        self.settings = settings

    def envelope_and_copy(self, item: Claimed, verp_key: bytes, *, stuffed: bool = False) -> tuple[str, bytes]:
        member_ids = [int(i) for i in item.member_ids.split()] if item.member_ids else []
        if member_ids:
            token = tokens.make_unsubscribe_token(self.settings, self.info.list_id, member_ids)
        else:
            token = tokens.make_unsubscribe_token(self.settings, self.info.list_id, email_key=item.address.lower())
        personal = Personal(
            unsubscribe_url=f"{self.settings.base_url}/u/{token}",
            unsubscribe_mailto=f"mailto:{self.info.local_part}-unsubscribe@{self.info.domain}?subject={token}",
            reason=item.reason or "abonné(e) à la liste", shared_by=max(1, len(member_ids)))
        sender = verp.return_path(self.info.local_part, self.info.domain, verp.make_token(verp_key, item.id))
        return sender, self.signer.copy(personal, stuffed=stuffed)


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
    """Long-lived pipelining connections to the smarthost, one per lane."""

    def __init__(self, url: str, lanes: int, helo: str | None = None) -> None:
        self.relay = smarthost.parse(url)
        self.tls_context = self.relay.tls_context()
        self.helo = helo or socket.getfqdn()
        self.lanes = lanes
        self.connections: dict[int, Connection] = {}

    async def _connection(self, lane: int) -> Connection:
        connection = self.connections.get(lane)
        if connection is None:
            relay = self.relay
            connection = await Connection.open(relay.host, relay.port, helo=self.helo, starttls=relay.starttls,
                                               implicit_tls=relay.implicit_tls, tls_context=self.tls_context,
                                               username=relay.username, password=relay.password)
            self.connections[lane] = connection
        return connection

    async def run_lane(self, lane: int, take: Callable[[], Item | None], done: Callable[[Item, Reply], None]) -> None:
        for _attempt in range(2):  # one reconnection per batch and lane, then leave the rest for later
            try:
                connection = await self._connection(lane)
                await connection.send_stream(take, lambda item, reply: self._done(lane, item, reply, done))
                return
            except SmtpError as exc:
                self.last_error = f"4.4.2 {exc}"
                dropped = self.connections.pop(lane, None)
                if dropped is not None:
                    dropped.abort()

    def _done(self, lane: int, item: Item, reply: Reply, done: Callable[[Item, Reply], None]) -> None:
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
        return SmtpTransport(settings.smarthost, settings.delivery_connections)
    return CaptureTransport(settings)


class Worker:
    """Claims and sends batches until none is due. ``run_in_db`` runs a function in the database thread."""

    def __init__(self, settings: Settings, transport: Transport, run_in_db: RunInDb, name: str) -> None:
        self.settings, self.transport, self.run_in_db, self.name = settings, transport, run_in_db, name
        self.verp_key = verp.signing_key(settings)
        self.cache: OrderedDict[int, PreparedMessage] = OrderedDict()

    async def _prepared(self, message_id: int) -> PreparedMessage:
        found = self.cache.get(message_id)
        if found is None:
            message = await self.run_in_db(Message.get_by_id, message_id)
            found = await self.run_in_db(PreparedMessage, self.settings, message)
            self.cache[message_id] = found
            while len(self.cache) > 8:
                self.cache.popitem(last=False)
        self.cache.move_to_end(message_id)
        return found

    async def claim(self) -> list[Claimed]:
        claimed: list[Claimed] = await self.run_in_db(claim_due, self.name, self.settings.delivery_batch,
                                                      self.settings.delivery_lease)
        return claimed

    async def run_until_idle(self) -> int:
        """Send batch after batch until none is due; the next claim and the last record run in the
        database thread while the current batch is on the wire. Returns how many copies were handled."""
        handled = 0
        claimed = await self.claim()
        recording: asyncio.Task[None] | None = None
        try:
            while claimed:
                following = asyncio.ensure_future(self.claim())
                results = await self.send(claimed)
                if recording is not None:
                    await recording
                recording = asyncio.ensure_future(self.record(claimed, results))
                handled += len(claimed)
                claimed = await following
        finally:
            if recording is not None:
                await recording
        return handled

    async def send(self, claimed: list[Claimed]) -> list[Result]:
        """Render and send each claimed copy; one result per copy (a temporary one when no reply came)."""
        prepared: dict[int, PreparedMessage] = {}
        results: list[Result] = []
        for mid in dict.fromkeys(item.message_id for item in claimed):
            try:
                prepared[mid] = await self._prepared(mid)
            except HeaderInjection as exc:  # list settings that slipped past the forms: never send them
                results += [Result(item.id, 554, f"554 5.6.0 Cannot render the list's copy: {exc}")
                            for item in claimed if item.message_id == mid]
        pending = [item for item in reversed(claimed) if item.message_id in prepared]
        in_flight: set[int] = set()

        def take() -> Item | None:
            if not pending:
                return None
            item = pending.pop()
            sender, data = prepared[item.message_id].envelope_and_copy(item, self.verp_key,
                                                                       stuffed=self.transport.dot_stuffed)
            in_flight.add(item.id)
            return item.id, sender, item.address, data

        def done(item: Item, reply: Reply) -> None:
            in_flight.discard(item[0])
            text = reply.text.replace("\n", " ")
            results.append(Result(item[0], reply.code, f"{reply.code} {text}"))

        await asyncio.gather(*(self.transport.run_lane(n, take, done) for n in range(self.transport.lanes)))
        # No reply known: the connection broke while they were in flight, or no lane could connect.
        unknown = [*in_flight, *(item.id for item in pending)]
        results += [Result(delivery_id, 0, self.transport.last_error or "4.4.2 no reply") for delivery_id in unknown]
        return results

    async def record(self, claimed: list[Claimed], results: list[Result]) -> None:
        settings = self.settings
        received = {mid: self.cache[mid].received_at for mid in {i.message_id for i in claimed} if mid in self.cache}
        received.update({item.message_id: clock.now() for item in claimed if item.message_id not in received})
        await self.run_in_db(record, results, {item.id: item for item in claimed}, first=settings.retry_first,
                             longest=settings.retry_max, lifetime=settings.retry_lifetime, received=received,
                             now=clock.now())
