"""The pipelined send loop of one connection, run from the reply protocol's callbacks.

RFC 2920 lets a client write the content of one copy and the next copy's MAIL, RCPT and DATA together,
so a copy costs one round trip; but a coroutine awaiting each round trip costs a future, a task wake-up
and a turn of the event loop per copy (about 5 µs here, docs/benchmarks.md). ``Stream`` does the same
steps as the replies arrive: ``ReplyProtocol.expect`` calls it back once the replies of a round trip
are in, and the lane's coroutine awaits only the end of the whole stream. The guarantees are those of
the loop it replaces: a copy's content is written only after its 354 (until then it is ``unsent``, free
to go on another connection); a copy whose content went out is in doubt until its final reply; every
reply reaches ``done`` in order; a failure (connection lost, malformed reply, no reply in time, a 421)
ends the stream with ``SmtpError`` after the replies that did come were handed out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.outbound.replies import Item, Reply, SmtpError

if TYPE_CHECKING:
    from engine.outbound.smtp import Connection


class Stream:
    """Copies sent one round trip each on ``connection``, driven by its protocol's callbacks."""

    def __init__(self, connection: Connection, take: Callable[[], tuple[Item, bytes] | None],
                 done: Callable[[Item, Reply], None], unsent: list[Item]) -> None:
        self.connection, self.take, self.done, self.unsent = connection, take, done, unsent
        self.protocol = connection.protocol
        self.previous: Item | None = None  # content written, its final reply not yet in
        self.current: tuple[Item, bytes] | None = None  # MAIL, RCPT and DATA written, their replies not yet in
        self.resetting = False  # RSET written after a refused envelope, its reply not yet in
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run(self, first: tuple[Item, bytes]) -> None:
        """Send ``first`` and every copy ``take`` gives after it; returns once the last reply is in."""
        self.current = first
        self.connection.write(first[1])
        if self.protocol.expect(3, self.connection.timeout, self._ready):
            self._ready()
        try:
            await self.finished
        finally:
            self.protocol.expect_nothing()

    def _ready(self) -> None:
        """The replies awaited are in (or the connection failed, or none came in time): go on."""
        try:
            while self._step() and self.protocol.expect(self._wanted(), self.connection.timeout, self._ready):
                pass
        except Exception as exc:  # SmtpError, or a fault of a callback: the lane sees it as the old loop did
            if not self.finished.done():
                self.finished.set_exception(exc)

    def _wanted(self) -> int:
        return self.resetting + (self.previous is not None) + (3 if self.current is not None else 0)

    def _step(self) -> bool:
        """Hand out the replies of one round trip and write the next; False once nothing is awaited."""
        protocol = self.protocol
        if self.resetting:
            reset = protocol.take()
            if reset.code != 250:
                raise SmtpError(f"RSET refused: {reset}")
            self.resetting = False
        if self.previous is not None:
            previous, self.previous = self.previous, None
            self.done(previous, protocol.take())
        if self.current is not None:
            item = self.current[0]
            mail, rcpt, data = protocol.take(), protocol.take(), protocol.take()
            following = self.take()
            nxt = following[1] if following else b""
            if data.code == 354:
                self.unsent.remove(item)  # from here on the server may accept it: in doubt until its reply
                self.connection.write(item[3] + b".\r\n" + nxt)
                self.previous = item
            else:
                self.done(item, next(r for r in (mail, rcpt, data) if r.code >= 400))
                self.connection.write(b"RSET\r\n" + nxt)
                self.resetting = True
            self.current = following
        if self._wanted():
            return True
        self.connection.last_used = asyncio.get_running_loop().time()
        if not self.finished.done():
            self.finished.set_result(None)
        return False
