"""Delivery: claim due copies, render each one from its message's prepared segments, send, record.

A worker claims a batch (a lease protects it), renders copies lazily inside the transport's
concurrent lanes (SMTP connections kept open, or the local capture), and records every reply. Each
message and each copy is isolated: a message that cannot be rendered is failed once (its author and
owner told) without touching the others, a copy whose building raises is deferred like a temporary
failure (and failed when its retry lifetime ends), and every claim gets its attempt recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from engine import statements, tokens
from engine.bounces import verp
from engine.config import Settings
from engine.lists.models import Domain, MailingList
from engine.outbound import failures, mime
from engine.outbound.builder import Builder, internal, together
from engine.outbound.dispatch import Dispatch
from engine.outbound.outbox import Claimed, Result, claim_due
from engine.outbound.pacer import Pacer
from engine.outbound.recorder import Counted, Recorder
from engine.outbound.smtp import Item, Reply
from engine.outbound.transport import Transport
from engine.posting import dmarc, signing
from engine.posting.models import Message, MessageState
from engine.posting.render import ListInfo, Personal, Prepared, list_info, prepare

RunInDb = Callable[..., Awaitable[Any]]
log = logging.getLogger("palanquee.delivery")
DEFAULT_REASON = "abonné(e) à la liste"


_WITH_LIST = statements.Select(lambda message_id: Message.select(Message, MailingList, Domain).join(MailingList)
                               .join(Domain).where(Message.id == message_id), Message.id)


def load_message(message_id: int) -> tuple[Message, ListInfo]:
    """The stored post and what rendering needs of its list (database thread): one query, compiled once."""
    found = _WITH_LIST(message_id)
    if not found:
        raise Message.DoesNotExist(f"no message {message_id}")
    message = found[0]
    mailing_list: MailingList = message.mailing_list
    # One translation of the list's settings (render.list_info), shared with the intake's check.
    return message, list_info(mailing_list, rewrite_from=dmarc.should_rewrite(mailing_list.dmarc_mode, message.author))


class Unrenderable(Exception):
    """The message cannot be prepared; ``reason`` says why (it would fail the same way every time)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PreparedMessage:
    """A message rendered once, with what every copy of it needs."""

    def __init__(self, settings: Settings, message: Message, info: ListInfo) -> None:
        self.info = info
        raw = bytes(message.content)
        if mime.may_need_reencoding(raw):  # binary parts: re-encoded once, for any relay (no BINARYMIME)
            raw = mime.reencode(raw)
        self.prepared: Prepared = prepare(raw, self.info)
        self.size = sum(len(segment) for segment in self.prepared.segments)  # a copy's bytes, about
        self.signer = signing.CopySigner(self.prepared, [])  # unsigned until ``sign`` (database thread)
        self.received_at: datetime = message.received_at
        self.settings = settings
        self.url_prefix = f"{settings.base_url}/u/"
        self.mailto_prefix = f"mailto:{info.local_part}-unsubscribe@{info.domain}?subject="

    def envelope_and_copy(self, item: Claimed, verp_key: bytes, *, stuffed: bool = False) -> tuple[str, bytes]:
        """One copy's return path and finished bytes (``envelopes_and_copies`` makes several at once)."""
        sender, personal = self._personal(item, verp_key)
        return sender, self.signer.copy(personal, stuffed=stuffed)

    def envelopes_and_copies(self, items: list[Claimed], verp_key: bytes, *,
                             stuffed: bool = False) -> list[tuple[str, bytes]]:
        """``envelope_and_copy`` of several copies at once, their signatures made back to back
        (``CopySigner.copies``); raises when any of them cannot be built (the caller then builds each alone)."""
        made = [self._personal(item, verp_key) for item in items]
        copies = self.signer.copies([personal for _, personal in made], stuffed=stuffed)
        return [(sender, copy) for (sender, _), copy in zip(made, copies, strict=True)]

    def _personal(self, item: Claimed, verp_key: bytes) -> tuple[str, Personal]:
        """The copy's return path (VERP) and its personal pieces."""
        info = self.info
        member_ids = [int(i) for i in item.member_ids.split()] if item.member_ids else []
        # the members sharing the address, or the address itself when they are many or none (tokens.py)
        token = tokens.make_unsubscribe_token(self.settings, info.list_id, member_ids,
                                              email_key=item.address.strip().lower())
        personal = Personal(self.url_prefix + token, self.mailto_prefix + token, item.reason or DEFAULT_REASON,
                            len(member_ids) or 1)
        return verp.return_path(info.local_part, info.domain, verp.make_token(verp_key, item.id)), personal

    def sign(self, message: Message) -> None:
        """DKIM and ARC, the copy's last step: the list domain's keys and the list's ARC setting (database
        thread)."""
        self.signer = signing.for_message(self.settings, message, self.prepared)


class Worker:
    """Claims and sends batches until none is due. ``run_in_db`` runs a function in the database thread.

    ``stop()`` asks for a graceful end: no new claim, no new copy on the wire; the copies in flight
    get their replies and are recorded, and the claims not yet tried are given back at once.
    """

    def __init__(self, settings: Settings, transport: Transport, run_in_db: RunInDb, name: str,
                 counted: Counted | None = None, pace: Callable[[], Awaitable[None]] | None = None) -> None:
        self.settings, self.transport, self.run_in_db, self.name = settings, transport, run_in_db, name
        self.pace = pace  # awaited before each claim: held while intake workers are busy (engine/intake_pressure.py)
        self.verp_key = verp.signing_key(settings)
        self.cache: OrderedDict[int, PreparedMessage] = OrderedDict()
        self.recorder = Recorder(settings, run_in_db, counted)  # counted: (group, outcome) of each result
        self.pacer = Pacer(settings, run_in_db)
        self.stopping = False
        self.busy: set[int] = set()  # ids of the batch being sent

    def stop(self) -> None:
        self.stopping = True

    async def _prepared(self, message_id: int) -> PreparedMessage:
        """The message rendered once (cached); ``Unrenderable`` when rendering raises."""
        found = self.cache.get(message_id)
        if found is None:
            message, info = await self.run_in_db(load_message, message_id)
            self.recorder.received_at(message_id, message.received_at)
            if message.state == MessageState.FAILED:
                raise Unrenderable(message.reason or failures.UNRENDERABLE)
            try:
                found = await asyncio.to_thread(PreparedMessage, self.settings, message, info)
            except Exception as exc:  # any fault of rendering: the same input fails the same way
                log.exception("message %s cannot be rendered", message_id, extra={"message_id": message_id})
                raise Unrenderable(failures.describe(exc)) from exc
            await self.run_in_db(found.sign, message)
            self.cache[message_id] = found
            while len(self.cache) > 8:
                self.cache.popitem(last=False)
        self.cache.move_to_end(message_id)
        return found

    async def claim(self) -> list[Claimed]:
        if self.pace is not None and not self.stopping:
            await self.pace()
        if self.stopping:
            return []
        claimed: list[Claimed] = await self.run_in_db(claim_due, self.name, self.settings.delivery_batch,
                                                      self.settings.delivery_lease)
        return self.recorder.expect(claimed, self.busy)

    def give_back(self, ids: list[int], due: list[datetime] | None = None) -> None:
        """Release claims never tried (a graceful stop, an unreachable database, throttling): due again
        at once or at ``due``, their attempt not counted; written with the next group of results."""
        self.recorder.give_back(ids, due)

    async def run_until_idle(self) -> int:
        """Send batch after batch until none is due (or ``stop()``); the next claim runs in the
        database thread while the current batch is on the wire, and results are recorded as they
        arrive. Returns how many copies were handled."""
        handled = 0
        claimed = await self.claim()
        while claimed:
            following = asyncio.ensure_future(self.claim())
            try:
                handled += await self.send(claimed)
            except BaseException:
                following.cancel()  # cancelled (a hard stop): claims already taken wait out their lease
                raise
            claimed = await following
            if self.stopping:
                self.give_back([item.id for item in claimed])
                claimed = []
        await self.recorder.drain()
        return handled

    async def _prepare_all(self, claimed: list[Claimed]) -> dict[int, PreparedMessage]:
        """Each claimed message rendered once; the copies of one that cannot be get their result here."""
        prepared: dict[int, PreparedMessage] = {}
        for mid in dict.fromkeys(item.message_id for item in claimed):
            ids = [item.id for item in claimed if item.message_id == mid]
            try:
                try:
                    prepared[mid] = await self._prepared(mid)
                except Unrenderable as exc:
                    await self.run_in_db(failures.fail_message, self.settings, mid, exc.reason, ids)
                    for delivery_id in ids:
                        self.recorder.add(Result(delivery_id, 554, exc.reason, local=True))
            except Exception as exc:
                if _database_error(exc):  # unreachable: these copies go back, due again once it answers
                    log.warning("cannot load message %s; its copies are given back", mid, exc_info=True)
                    self.give_back(ids)
                    continue
                log.exception("cannot prepare message %s", mid)  # signing keys…: retried, failed after the lifetime
                for delivery_id in ids:
                    self.recorder.add(Result(delivery_id, 0, internal("preparing the message", exc), local=True))
        return prepared

    async def send(self, claimed: list[Claimed]) -> int:
        """Render and send each claimed copy at its group's pace; each result goes to the recorder as
        its reply arrives, and copies put off by throttling are given back with the time they may go."""
        ids = {item.id for item in claimed}
        self.busy |= ids  # a claim taken again meanwhile (its lease ran out) must not send them twice
        try:
            return await self._send(claimed)
        finally:
            self.busy -= ids
            self.recorder.forget(ids)

    async def _send(self, claimed: list[Claimed]) -> int:
        add = self.recorder.add
        prepared = await self._prepare_all(claimed)
        groups, later = await self.pacer.admit([item for item in claimed if item.message_id in prepared])
        if later:
            self.give_back([delivery_id for delivery_id, _ in later], [moment for _, moment in later])
        for group, members in groups.items():
            self.recorder.grouped([item.id for item in members], group.rule)
        in_flight: set[int] = set()
        builder = Builder(prepared, self.verp_key, self.transport.dot_stuffed, add, in_flight)

        def done(item: Item, reply: Reply) -> None:
            in_flight.discard(item[0])
            text = reply.text.replace("\n", " ")
            add(Result(item[0], reply.code, f"{reply.code} {text}", local=reply.local))

        dispatch = Dispatch(builder.build, lambda: self.stopping, self.settings.delivery_processes,
                            build_many=builder.build_many, together=together(message.size for message in prepared.values()))
        for group, members in groups.items():
            dispatch.add(group, members)
        lanes = await asyncio.gather(*(self.transport.run_lane(n, dispatch, done) for n in range(self.transport.lanes)),
                                     return_exceptions=True)
        for outcome in lanes:
            if isinstance(outcome, BaseException):
                log.error("delivery lane failed", exc_info=outcome)
        await self._settle(dispatch, in_flight)
        return len(claimed)

    async def _settle(self, dispatch: Dispatch, in_flight: set[int]) -> None:
        """What the lanes left: copies in doubt, copies of a group that asked to slow down, copies untried."""
        left = dispatch.left()
        error = self.transport.last_error
        untouched = {delivery_id for ids in left.values() for delivery_id in ids}
        for delivery_id in in_flight - untouched:  # content written, no reply: in doubt, retried later
            self.recorder.add(Result(delivery_id, 0, error or "4.4.2 no reply"))
        for group in dispatch.slowed - set(left):
            await self.pacer.slowed(group, 0)
        for group, ids in left.items():
            if group in dispatch.slowed:
                self.give_back(ids, await self.pacer.slowed(group, len(ids)))
            elif self.stopping:
                self.give_back(ids)
            else:  # no lane could reach the relay
                for delivery_id in ids:
                    self.recorder.add(Result(delivery_id, 0, error or "4.4.2 no connection"))


def _database_error(error: BaseException) -> bool:
    import sqlite3

    import peewee
    import psycopg

    return isinstance(error, (peewee.PeeweeException, sqlite3.Error, psycopg.Error))
