"""The pipelined send loop (``Connection.send_stream`` with PIPELINING) when the relay fails in the middle of
it: which copies were answered, which may go at once elsewhere (``unsent``: their content never left), which
are in doubt (content written, no final reply). A scripted relay on loopback, so that it can fall silent, hang up or
talk nonsense at a chosen copy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from engine.outbound.smtp import Connection, Item, Reply, SmtpError, dot_stuff
from tests.support import aio

COPY = dot_stuff(b"From: a@example.fr\r\nSubject: essai\r\n\r\nBonjour\r\n.ligne avec un point\r\n")


class _Relay(asyncio.Protocol):
    """Speaks just enough SMTP with PIPELINING; at copy ``fault`` (1-based) it does ``how`` instead of its
    final reply: ``silent`` (and nothing more), ``hangup`` or ``nonsense`` (a 421 needs the transport: its
    test is in test_delivery_retries)."""

    def __init__(self, fault: int, how: str, refused: set[int]) -> None:
        self.fault, self.how, self.refused = fault, how, refused
        self.buffer, self.in_data, self.copies, self.rcpts = b"", False, 0, 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(b"220 relay ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.buffer, self.in_data = self.buffer[end + 5:], False
                self.copies += 1
                if self.copies == self.fault:
                    if self.how == "silent":
                        self.transport.pause_reading()
                        return
                    if self.how == "hangup":
                        self.transport.close()
                        return
                    self.transport.write(b"hello there\r\n")  # nonsense
                    continue
                self.transport.write(b"250 2.0.0 queued\r\n")
                continue
            line, found, rest = self.buffer.partition(b"\r\n")
            if not found:
                return
            self.buffer = rest
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(b"250-relay\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"RCPT":
                self.rcpts += 1
                self.transport.write(b"550 5.1.1 unknown\r\n" if self.rcpts in self.refused else b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                if self.rcpts in self.refused:
                    self.transport.write(b"554 5.5.1 no valid recipients\r\n")
                else:
                    self.transport.write(b"354 go ahead\r\n")
                    self.in_data = True
            else:  # MAIL, RSET, QUIT
                self.transport.write(b"250 2.0.0 ok\r\n")


def _taker(items: list[Item]) -> Callable[[], Item | None]:
    return lambda: items.pop(0) if items else None


async def _serve(fault: int, how: str, refused: frozenset[int] = frozenset()) -> tuple[asyncio.Server, list[_Relay]]:
    relays: list[_Relay] = []

    def made() -> _Relay:
        relays.append(_Relay(fault, how, set(refused)))
        return relays[-1]

    return await asyncio.get_running_loop().create_server(made, "127.0.0.1", 0), relays


async def _close(server: asyncio.Server, relays: list[_Relay]) -> None:
    """The listening socket and the relay's side of every session, closed before the loop ends."""
    server.close()
    for relay in relays:
        if relay.transport is not None:
            relay.transport.abort()
    await server.wait_closed()
    await asyncio.sleep(0)  # one turn: the aborted transports close their sockets


async def _stream(fault: int, how: str, refused: frozenset[int] = frozenset(),
                  copies: int = 8) -> tuple[list[tuple[int, int]], list[int] | None, str]:
    """Send ``copies`` copies on one connection; (key, code) of each answered, the keys ``unsent``, the error."""
    server, relays = await _serve(fault, how, refused)
    port = server.sockets[0].getsockname()[1]
    items = [(n, "liste-bounces@listes.example.fr", f"membre{n}@example.org", COPY) for n in range(1, copies + 1)]
    answered: list[tuple[int, int]] = []
    unsent: list[int] | None = None
    error = ""
    connection = await Connection.open("127.0.0.1", port, timeout=0.5)
    try:
        await asyncio.wait_for(connection.send_stream(_taker(items),  # a hung stream fails the test
                                                      lambda item, reply: answered.append((item[0], reply.code))), 30)
    except SmtpError as exc:
        unsent, error = [item[0] for item in exc.unsent], str(exc)
    finally:
        connection.abort()
        await _close(server, relays)
    return answered, unsent, error


def test_every_copy_is_answered_in_order_when_nothing_fails() -> None:
    answered, unsent, error = aio.run(_stream(fault=0, how="", refused=frozenset({3, 8})))
    assert answered == [(n, 550 if n in (3, 8) else 250) for n in range(1, 9)] and unsent is None and not error


@pytest.mark.parametrize(("how", "error"), [("silent", "no reply in time"), ("hangup", "connection closed"),
                                            ("nonsense", "malformed reply")])
def test_a_relay_failing_at_a_copy_leaves_it_in_doubt_and_the_next_one_free(how: str, error: str) -> None:
    """Copy 4's content went out and no final reply came: in doubt (retried later, never at once). Copy 5's
    envelope went with it but its content never did: given back for another connection at once."""
    answered, unsent, message = aio.run(_stream(fault=4, how=how))
    assert answered == [(1, 250), (2, 250), (3, 250)]
    assert unsent == [5], message
    assert error in message


def test_a_relay_failing_right_after_a_refused_recipient_still_answers_the_refusal() -> None:
    """Copy 2 is refused at RCPT (its RSET and copy 3's envelope go together); copy 3's content is then lost."""
    answered, unsent, message = aio.run(_stream(fault=2, how="hangup", refused=frozenset({2})))
    assert answered == [(1, 250), (2, 550)]
    assert unsent == [4] and "connection closed" in message


def test_streams_one_after_another_share_the_connection_which_stays_usable() -> None:
    async def run() -> tuple[list[int], Reply]:
        server, relays = await _serve(0, "")
        connection = await Connection.open("127.0.0.1", server.sockets[0].getsockname()[1], timeout=0.5)
        got: list[int] = []
        for batch in ([1, 2], [3]):
            items = [(n, "s@l.fr", f"m{n}@example.org", COPY) for n in batch]
            await connection.send_stream(_taker(items), lambda item, reply: got.append(item[0]))
        alive = not connection.closed and await connection.probe(1.0)
        connection.abort()
        await _close(server, relays)
        return got, Reply(250 if alive else 0, "")

    got, probe = aio.run(run())
    assert got == [1, 2, 3] and probe.code == 250
