"""What the SMTP client reads: replies parsed as bytes arrive, and the errors that end a connection.

``ReplyProtocol`` is the asyncio protocol under ``smtp.Connection``; it splits multi-line replies
(RFC 5321 §4.2.1) and wakes a waiter only once the reply it needs is complete.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Reply:
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
    is most of the client's own cost per copy on the delivery path.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.replies: deque[Reply] = deque()
        self._buffer = b""
        self._partial: list[str] = []
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self.error: SmtpError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if b"\n" not in data:
            return
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if len(line) < 3 or not line[:3].isdigit():
                self._fail(SmtpError(f"malformed reply: {line!r}"))
                return
            self._partial.append(line[4:])
            if line[3:4] != "-":
                self.replies.append(Reply(int(line[:3]), "\n".join(self._partial)))
                self._partial = []
        self._wake()

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
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self.error)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(self.error)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_reply(self, timeout: float) -> Reply:
        while not self.replies:
            if self.error is not None:
                raise self.error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError as exc:
                raise SmtpError("no reply in time") from exc
            finally:
                self._waiter = None
        return self.replies.popleft()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark (flow control)."""
        if self._paused and self.error is None:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None
