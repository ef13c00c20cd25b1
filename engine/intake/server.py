"""The aiosmtpd handler and listeners: SMTP for mail clients and the demo, LMTP for an MTA in front.

RCPT is checked against the list table (``routes``) and refused at once when it is not ours; DATA
stores the message through ``service.receive`` in the database thread and answers only after the
commit. LMTP answers once per accepted recipient (RFC 2033), SMTP once per transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from engine.config import Settings
from engine.intake import routes, service
from engine.intake.listener import SharedListener
from engine.notices import HeaderInjection
from engine.posting import render
from engine.posting.authentication import UNCHECKED, Client, Source, check_post

log = logging.getLogger("palanquee.intake")
RunInDb = Callable[..., Awaitable[Any]]


STORAGE_FULL = "452 4.3.1 Insufficient system storage, try again later"  # RFC 5321 §4.2.2, RFC 3463 X.3.1
Counted = Callable[[str, str], None]  # (stage: "rcpt" or "data", reply) of each reply given (metrics)


def storage_full(error: BaseException) -> bool:
    """The database could not write because its disk (or SQLite's ``max_page_count``) is full. SQLite
    rolls the transaction back itself, so the error raised may be the failed ROLLBACK that followed:
    the whole chain of causes is read."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if getattr(seen, "sqlstate", None) == "53100" or any(  # PostgreSQL's disk_full
                text in str(seen) for text in ("database or disk is full", "No space left on device")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class IntakeHandler:
    def __init__(self, settings: Settings, run_in_db: RunInDb, verp_key: bytes,
                 on_accepted: Callable[[], None], lmtp: bool = False, counted: Counted | None = None,
                 store_post: RunInDb | None = None) -> None:
        self.settings, self.run_in_db, self.verp_key = settings, run_in_db, verp_key
        self.store_post = store_post  # stores a post with the others waiting (group commit); else one by one
        self.on_accepted, self.lmtp = on_accepted, lmtp
        self.counted = counted or (lambda stage, reply: None)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if routes.has_controls(address):  # a NUL would fail every later write to PostgreSQL, a 451 forever
            return "553 5.1.7 Bad sender address syntax"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = await self._rcpt(session, envelope, address)
        self.counted("rcpt", reply)
        return reply

    async def _rcpt(self, session: Session, envelope: Envelope, address: str) -> str:
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:  # RFC 5321 §4.5.3.1.10
            return "452 4.5.3 Too many recipients in this transaction, send the rest in another"
        try:
            route, info = await self.run_in_db(service.rcpt, address, self.verp_key)
        except routes.Refused as refused:
            log.info("refused RCPT %s from %s: %s", address, session.peer, refused.reply,
                     extra={"rcpt": address, "reply": refused.reply})
            return refused.reply
        except Exception:
            log.exception("RCPT %s", address)
            return "451 4.3.0 Temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        if not hasattr(envelope, "routes"):
            envelope.routes = []  # type: ignore[attr-defined]
        envelope.routes.append(route)  # type: ignore[attr-defined]
        if info is not None:  # read with the route: the render check at DATA needs no other database call
            if not hasattr(envelope, "list_infos"):
                envelope.list_infos = {}  # type: ignore[attr-defined]
            envelope.list_infos[route.list_id] = info  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        sender = envelope.mail_from or ""
        sender = "" if sender == "<>" else sender
        replies: list[str] = []
        # One post per distinct list (and companion) however often it was named: RCPT repeated six
        # times must not make six posts. LMTP still answers once per accepted RCPT (RFC 2033 §4.2).
        peer = session.peer[0] if isinstance(session.peer, tuple) else ""
        # Over LMTP the client is the MTA in front, not the sender: no SPF verdict about it (use header mode).
        client = None if self.lmtp else Client(str(peer), str(session.host_name or ""))
        done: dict[tuple[int, str, int | None, int | None], str] = {}
        routes_ = list(getattr(envelope, "routes", []))
        checked = await self._authenticate(routes_, data, sender, client)
        infos: dict[int, render.ListInfo] = getattr(envelope, "list_infos", {})
        for route in routes_:
            key = (route.list_id, route.companion, route.delivery_id, route.domain_id)  # fbl@: one per domain
            if key not in done:
                done[key] = await self._receive(route, sender, data, client, checked, infos.get(route.list_id))
            replies.append(done[key])
        if not replies:
            self.counted("data", "554")
            return "554 5.5.1 No valid recipients"
        if self.lmtp:
            return "\r\n".join(replies)
        accepted = [reply for reply in replies if reply.startswith("2")]
        if accepted:
            return accepted[0]
        temporary = [reply for reply in replies if reply.startswith("4")]
        return temporary[0] if temporary else replies[0]


    async def _receive(self, route: routes.Route, sender: str, data: bytes, client: Client | None,
                       checked: object, info: render.ListInfo | None = None) -> str:
        reply = await self._store(route, sender, data, client, checked, info)
        self.counted("data", reply)
        return reply

    async def _store(self, route: routes.Route, sender: str, data: bytes, client: Client | None,
                     checked: object, info: render.ListInfo | None = None) -> str:
        """Store the post (or handle the companion) and return its reply: never 250 before the commit.
        ``info`` is the list as read at RCPT (read again here when missing)."""
        ids = {"list_id": route.list_id, "rcpt": route.address}
        try:
            problem = await self._render_problem(route, data, info)
            outcome: service.Outcome
            if self.store_post is not None and route.companion == routes.Companion.POST and checked is not UNCHECKED:
                outcome = await self.store_post(service.store_post, self.settings, route, sender, data, checked, problem)
            else:
                outcome = await self.run_in_db(service.receive, self.settings, route, sender, data, client, checked,
                                               render_problem=problem)
        except Exception as exc:
            if storage_full(exc):  # a 4xx: the sender keeps the message and tries again later
                log.error("cannot store a message for %s: the database's storage is full", route.address,
                          extra={**ids, "reply": STORAGE_FULL})
                return STORAGE_FULL
            log.exception("storing a message for %s", route.address, extra=ids)
            return "451 4.3.0 Could not store the message, try again later"
        log.info("message %s for %s from <%s>: %s", outcome.message_id or "-", route.address, sender, outcome.reply,
                 extra={**ids, "message_id": outcome.message_id, "reply": outcome.reply, "size": len(data)})
        if outcome.accepted:
            self.on_accepted()
        return outcome.reply

    async def _render_problem(self, route: routes.Route, data: bytes, info: render.ListInfo | None) -> str | None:
        """The reply refusing a post that delivery could never render, or None: the intake runs the
        very preparation delivery runs (outside the database thread), so a poison post never gets in."""
        if route.companion != routes.Companion.POST:
            return None
        if info is None:
            info = await self.run_in_db(service.list_info, route.list_id)
        try:
            await asyncio.to_thread(render.check, data, info)
        except render.Unrenderable as exc:
            return f"554 5.6.0 The message cannot be sent to the list: {exc.reason}"
        except HeaderInjection:  # the list's name or subject prefix: its staff can correct it
            return "451 4.3.5 The list's settings cannot be used in a message header; its staff must correct them"
        except Exception as exc:  # noqa: BLE001 - refused with its kind; the traceback goes to the log
            log.exception("rendering a post for %s", route.address)
            return f"554 5.6.0 The message cannot be prepared for the list ({type(exc).__name__})"
        return None

    async def _authenticate(self, routes_: list[routes.Route], data: bytes, sender: str,
                            client: Client | None) -> object:
        """The post's DKIM/SPF/DMARC outcome, once per transaction, in a thread of its own (DNS lookups must
        not stall the database thread); ``UNCHECKED`` when it cannot be had here (receive then retries)."""
        posts = [route for route in routes_ if route.companion == routes.Companion.POST]
        if not posts:
            return UNCHECKED
        if self.settings.inbound_authentication == Source.OFF:  # check_post's answer, without a thread
            return None
        try:
            return await asyncio.to_thread(check_post, self.settings, data, sender, client,
                                           posts[0].address.rpartition("@")[2])
        except Exception:
            log.exception("authenticating a post from %s", sender)
            return UNCHECKED


# The plain form of an address in MAIL and RCPT (RFC 5321 §4.1.2: a Dot-string at a domain name, in angle brackets):
# read here at once; anything else (quoted strings, domain literals, comments) by aiosmtpd's full parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>")


class _PlainAddresses:
    """aiosmtpd reads each address with the email package's header parser, about a tenth of the intake's event
    loop time per post (bench.intake): a plain address is read with one regular expression instead, with the
    very result the parser gives (``tests/engine/test_intake_group_commit.py`` compares them)."""

    local_part_limit: int

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = _PLAIN.match(arg)
        rest = arg[plain.end():] if plain else ""
        if plain is None or any(c in rest for c in "(\"\t\r\n") or (
                self.local_part_limit and len(plain.group(1).rpartition("@")[0]) > self.local_part_limit):
            return super()._getaddr(arg)  # type: ignore[misc, no-any-return]
        return plain.group(1), rest.lstrip(" ")


class IntakeSMTP(_PlainAddresses, SMTP):
    pass


class IntakeLMTP(_PlainAddresses, LMTP):
    pass


def _factory(handler: IntakeHandler, settings: Settings, lmtp: bool) -> Callable[[], SMTP]:
    def build() -> SMTP:
        cls = IntakeLMTP if lmtp else IntakeSMTP
        return cls(handler, data_size_limit=settings.max_message_size, enable_SMTPUTF8=True,
                   decode_data=False, hostname="palanquee", ident="Palanquée list engine")
    return build


async def start_listeners(settings: Settings, run_in_db: RunInDb, verp_key: bytes,
                          on_accepted: Callable[[], None],
                          smtp: tuple[str, int] | socket.socket | None, lmtp: tuple[str, int] | socket.socket | None,
                          counted: Counted | None = None,
                          store_post: RunInDb | None = None) -> list[asyncio.Server | SharedListener]:
    """Open the SMTP and LMTP listeners (either may be None) on the running loop; ``counted`` is told
    of every RCPT and DATA reply (metrics); ``store_post`` stores posts with group commit. A listener given as a
    socket is already bound (shared by the engine's intake processes, ``engine/prefork.py``)."""
    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server | SharedListener] = []
    for address, is_lmtp in ((smtp, False), (lmtp, True)):
        if address is None:
            continue
        handler = IntakeHandler(settings, run_in_db, verp_key, on_accepted, lmtp=is_lmtp, counted=counted,
                                store_post=store_post)
        server: asyncio.Server | SharedListener
        if isinstance(address, socket.socket):  # one connection per wake-up: shared fairly between workers
            server = SharedListener(address, _factory(handler, settings, is_lmtp))
        else:
            server = await loop.create_server(_factory(handler, settings, is_lmtp), address[0], address[1])
        servers.append(server)
    return servers
