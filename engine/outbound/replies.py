"""What the SMTP client reads: replies parsed as bytes arrive, and the errors that end a connection.

``ReplyProtocol`` is the asyncio protocol under ``smtp.Connection``; it splits multi-line replies
(RFC 5321 §4.2.1) and wakes a waiter only once the reply it needs is complete.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, NamedTuple

Item = tuple[Any, str, str, bytes]  # (key, sender, recipient, dot-stuffed data)


class SmtpError(Exception):
    """The connection is unusable (closed, protocol error, timeout).

    ``unsent`` lists the copies taken on it whose content was never written: the server cannot have
    accepted them, so they may go at once on another connection. A copy whose content was written
    but whose final reply never came is in doubt: it is retried later, as a temporary failure.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.unsent: list[Item] = []


class Reply(NamedTuple):
    """An SMTP reply (a tuple: made for every reply of every copy, it must be cheap)."""

    code: int
    text: str
    local: bool = False  # decided by this client (the server cannot carry the copy), not said by the server

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: double a leading dot on every line; end with CRLF."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    return b"." + data if data.startswith(b".") else data


class ReplyProtocol(asyncio.Protocol):
    """Parses replies as bytes arrive; a waiter is woken only once the replies it needs are in.

    A protocol rather than asyncio streams: one callback per chunk and no future per read, which
    is most of the client's own cost per copy on the delivery path. The delivery loop waits for all
    the replies of a round trip at once (``wait``) and takes them without awaiting (``take``). The
    reply timeout is kept by one timer per connection that moves with each wait, not a timer per
    wait (a timer per copy was a tenth of the client's CPU).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: deque[Reply] = deque()
        self._buffer = b""
        self._partial: list[str] = []
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 0
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self.error: SmtpError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if not buffer.endswith(b"\n"):
            cut = buffer.rfind(b"\n") + 1
            self._buffer, buffer = buffer[cut:], buffer[:cut]
            if not buffer:
                return
        else:
            self._buffer = b""
        partial, replies = self._partial, self.replies
        for raw in buffer[:-1].split(b"\n"):
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if len(line) < 3 or not line[:3].isdigit():
                self._fail(SmtpError(f"malformed reply: {line!r}"))
                return
            if line[3:4] == "-":
                partial.append(line[4:])
            elif partial:
                partial.append(line[4:])
                replies.append(Reply(int(line[:3]), "\n".join(partial)))
                partial.clear()
            else:
                replies.append(Reply(int(line[:3]), line[4:]))
        if self._waiter is not None and len(replies) >= self._wanted and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(SmtpError(f"connection closed by the server{f': {exc}' if exc else ''}"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _fail(self, error: SmtpError) -> None:
        self.error = self.error or error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self.error)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(self.error)

    async def wait(self, count: int, timeout: float) -> None:
        """Until ``count`` replies are in (or the connection failed: ``take`` then raises once the
        replies that did come are taken); ``SmtpError`` when none came for ``timeout`` seconds."""
        if len(self.replies) >= count or self.error is not None:
            return
        loop = asyncio.get_running_loop()
        self._wanted = count
        self._deadline = loop.time() + timeout
        if self._timer is None or self._timer.when() > self._deadline:  # a shorter timeout than the last wait's
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(self._deadline, self._watch)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        except SmtpError:
            if not self.replies:
                raise
        finally:
            self._waiter = None

    def _watch(self) -> None:
        """The per-connection timer: fails a wait that outlived its deadline, else follows the deadline."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= self._deadline:
            waiter.set_exception(SmtpError("no reply in time"))
        else:
            self._timer = loop.call_at(self._deadline, self._watch)

    def take(self) -> Reply:
        """The next reply that is in (after ``wait``); the connection's error when none is left."""
        if self.replies:
            return self.replies.popleft()
        raise self.error or SmtpError("no reply in time")

    async def next_reply(self, timeout: float) -> Reply:
        await self.wait(1, timeout)
        return self.take()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark (flow control)."""
        if self._paused and self.error is None:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None
