"""What the SMTP client reads: replies parsed as bytes arrive, and the errors that end a connection.

``ReplyProtocol`` is the asyncio protocol under ``smtp.Connection``; it splits multi-line replies
(RFC 5321 §4.2.1) and wakes a waiter only once the reply it needs is complete.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
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
    wait (a timer per copy was a tenth of the client's CPU). The delivery stream does not even wait:
    ``expect`` calls it back when a round trip's replies are in (``stream.py``).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: deque[Reply] = deque()
        self._buffer = b""
        self._partial: list[str] = []
        self._waiter: asyncio.Future[None] | None = None
        self._on_ready: Callable[[], None] | None = None  # ``expect``'s callback
        self._wanted = 0
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
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
        if len(replies) >= self._wanted:
            if self._on_ready is not None:
                self._call_ready()
            elif self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(SmtpError(f"connection closed by the server{f': {exc}' if exc else ''}"))

    def _fail(self, error: SmtpError) -> None:
        self.error = self.error or error
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self.error)
        if self._on_ready is not None:
            self._call_ready()

    def expect(self, count: int, timeout: float, on_ready: Callable[[], None]) -> bool:
        """``wait`` as a callback (the delivery stream, ``stream.py``): True when ``count`` replies are
        already in or the connection failed; else ``on_ready()`` is called once, from the event loop, when
        they are in, when the connection fails, or when none came for ``timeout`` seconds (``take`` then
        raises once the replies that did come are taken)."""
        if len(self.replies) >= count or self.error is not None:
            self._on_ready = None
            return True
        self._wanted = count
        self._arm(timeout)
        self._on_ready = on_ready
        return False

    def expect_nothing(self) -> None:
        """Forget ``expect``'s callback (its stream ended, or its lane was cancelled)."""
        self._on_ready = None

    def _call_ready(self) -> None:
        ready, self._on_ready = self._on_ready, None
        if ready is not None:
            ready()

    async def wait(self, count: int, timeout: float) -> None:
        """Until ``count`` replies are in (or the connection failed: ``take`` then raises once the
        replies that did come are taken); ``SmtpError`` when none came for ``timeout`` seconds."""
        if len(self.replies) >= count or self.error is not None:
            return
        self._wanted = count
        self._arm(timeout)
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        except SmtpError:
            if not self.replies:
                raise
        finally:
            self._waiter = None

    def _arm(self, timeout: float) -> None:
        """The wait's deadline; the one timer moves only when it must fire sooner than it would."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout
        if self._timer is None or self._timer.when() > self._deadline:  # a shorter timeout than the last wait's
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(self._deadline, self._watch)

    def _watch(self) -> None:
        """The per-connection timer: ends a wait that outlived its deadline, else follows the deadline."""
        self._timer = None
        waiter = self._waiter
        if (waiter is None or waiter.done()) and self._on_ready is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._watch)
        elif waiter is not None and not waiter.done():
            waiter.set_exception(SmtpError("no reply in time"))
        else:
            self._call_ready()

    def take(self) -> Reply:
        """The next reply that is in (after ``wait``); the connection's error when none is left."""
        if self.replies:
            return self.replies.popleft()
        raise self.error or SmtpError("no reply in time")

    async def next_reply(self, timeout: float) -> Reply:
        await self.wait(1, timeout)
        return self.take()
