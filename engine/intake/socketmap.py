"""A Postfix ``socketmap`` table (socketmap_table(5)) answering, in real time, which addresses exist.

With Postfix in front, ``relay_recipient_maps = socketmap:inet:HOST:PORT:recipients`` makes Postfix
ask the engine at RCPT time, so that a mail for an unknown list, a deleted list, a switched-off
domain or a forged bounce address is refused by Postfix in the SMTP dialogue instead of being
accepted and bounced later to a possibly forged sender (backscatter). The answer is the intake's own
routing (``routes.route``): a list created a second ago is known at once.

Protocol: each request is one netstring ``name <space> key``; each reply one netstring, ``OK
<space> data``, ``NOTFOUND <space>``, ``TEMP <space> reason`` or ``PERM <space> reason``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from engine.intake import routes

log = logging.getLogger("palanquee.socketmap")
RunInDb = Callable[..., Awaitable[Any]]

MAP_NAME = "recipients"
MAX_REQUEST = 2048  # octets: a map name, a space and an address (at most 254 octets in practice)
IDLE_SECONDS = 300.0  # Postfix keeps its connection open between lookups; an idle one is closed


class ProtocolError(Exception):
    """The peer does not speak netstrings; the connection is closed."""


def netstring(data: bytes) -> bytes:
    return str(len(data)).encode("ascii") + b":" + data + b","


async def read_netstring(reader: asyncio.StreamReader) -> bytes | None:
    """The next netstring's content; None at a clean end of the stream."""
    head = b""
    while not head.endswith(b":"):
        byte = await reader.read(1)
        if not byte:
            if head:
                raise ProtocolError("connection closed inside a netstring length")
            return None
        head += byte
        if len(head) > len(str(MAX_REQUEST)) + 1 or not (byte.isdigit() or byte == b":"):
            raise ProtocolError(f"bad netstring length {head[:12]!r}")
    if head == b":":
        raise ProtocolError("empty netstring length")
    length = int(head[:-1])
    if length > MAX_REQUEST:
        raise ProtocolError(f"request of {length} octets, at most {MAX_REQUEST}")
    body = await reader.readexactly(length + 1)
    if not body.endswith(b","):
        raise ProtocolError("netstring not terminated by a comma")
    return body[:-1]


class Socketmap:
    """Answers lookups with the intake's routing, each in the engine's database thread."""

    def __init__(self, run_in_db: RunInDb, verp_key: bytes) -> None:
        self.run_in_db, self.verp_key = run_in_db, verp_key

    async def answer(self, request: bytes) -> bytes:
        name, space, key = request.decode("utf-8", "replace").partition(" ")
        if not space or name != MAP_NAME:
            return b"PERM unknown map name (this engine serves '" + MAP_NAME.encode() + b"')"
        try:
            route: routes.Route = await self.run_in_db(routes.route, key, self.verp_key)
        except routes.Refused:
            return b"NOTFOUND "
        except Exception:  # noqa: BLE001 - the database is unreachable: Postfix answers 4xx and the sender retries
            log.exception("socketmap lookup of %r", key)
            return b"TEMP the list engine cannot read its database"
        return b"OK " + route.companion.encode("ascii")

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(IDLE_SECONDS):  # not wait_for: see Engine._wait
                    request = await read_netstring(reader)
                if request is None:
                    break
                writer.write(netstring(await self.answer(request)))
                await writer.drain()
        except (TimeoutError, ProtocolError, asyncio.IncompleteReadError, ConnectionError) as exc:
            log.info("socketmap connection from %s closed: %s", writer.get_extra_info("peername"), exc)
        finally:
            writer.close()


async def start(run_in_db: RunInDb, verp_key: bytes, address: tuple[str, int]) -> asyncio.Server:
    """Listen on ``address`` (host, port; port 0 picks a free one) on the running loop."""
    socketmap = Socketmap(run_in_db, verp_key)
    return await asyncio.start_server(socketmap.serve, address[0], address[1])
