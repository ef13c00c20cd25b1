"""The aiosmtpd handler and listeners: SMTP for mail clients and the demo, LMTP for an MTA in front.

RCPT is checked against the list table (``routes``) and refused at once when it is not ours; DATA
stores the message through ``service.receive`` in the database thread and answers only after the
commit. LMTP answers once per accepted recipient (RFC 2033), SMTP once per transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from engine.config import Settings
from engine.intake import routes, service
from engine.posting.authentication import Client

log = logging.getLogger("palanquee.intake")
RunInDb = Callable[..., Awaitable[Any]]


class IntakeHandler:
    def __init__(self, settings: Settings, run_in_db: RunInDb, verp_key: bytes,
                 on_accepted: Callable[[], None], lmtp: bool = False) -> None:
        self.settings, self.run_in_db, self.verp_key = settings, run_in_db, verp_key
        self.on_accepted, self.lmtp = on_accepted, lmtp

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        try:
            route = await self.run_in_db(routes.route, address, self.verp_key)
        except routes.Refused as refused:
            log.info("refused RCPT %s from %s: %s", address, session.peer, refused.reply)
            return refused.reply
        except Exception:
            log.exception("RCPT %s", address)
            return "451 4.3.0 Temporary failure, try again later"
        envelope.rcpt_tos.append(address)
        if not hasattr(envelope, "routes"):
            envelope.routes = []  # type: ignore[attr-defined]
        envelope.routes.append(route)  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        sender = envelope.mail_from or ""
        sender = "" if sender == "<>" else sender
        replies: list[str] = []
        peer = session.peer[0] if isinstance(session.peer, tuple) else ""
        client = Client(str(peer), str(session.host_name or ""))
        for route in getattr(envelope, "routes", []):
            try:
                outcome = await self.run_in_db(service.receive, self.settings, route, sender, data, client)
            except Exception:
                log.exception("storing a message for %s", route.address)
                replies.append("451 4.3.0 Could not store the message, try again later")
                continue
            if outcome.accepted:
                self.on_accepted()
            replies.append(outcome.reply)
        if not replies:
            return "554 5.5.1 No valid recipients"
        if self.lmtp:
            return "\r\n".join(replies)
        accepted = [reply for reply in replies if reply.startswith("2")]
        if accepted:
            return accepted[0]
        temporary = [reply for reply in replies if reply.startswith("4")]
        return temporary[0] if temporary else replies[0]


def _factory(handler: IntakeHandler, settings: Settings, lmtp: bool) -> Callable[[], SMTP]:
    def build() -> SMTP:
        cls = LMTP if lmtp else SMTP
        return cls(handler, data_size_limit=settings.max_message_size, enable_SMTPUTF8=True,
                   decode_data=False, hostname="palanquee", ident="Palanquée list engine")
    return build


async def start_listeners(settings: Settings, run_in_db: RunInDb, verp_key: bytes,
                          on_accepted: Callable[[], None],
                          smtp: tuple[str, int] | None, lmtp: tuple[str, int] | None) -> list[asyncio.Server]:
    """Open the SMTP and LMTP listeners (either may be None) on the running loop."""
    loop = asyncio.get_running_loop()
    servers = []
    for address, is_lmtp in ((smtp, False), (lmtp, True)):
        if address is None:
            continue
        handler = IntakeHandler(settings, run_in_db, verp_key, on_accepted, lmtp=is_lmtp)
        server = await loop.create_server(_factory(handler, settings, is_lmtp), address[0], address[1])
        servers.append(server)
    return servers
