"""CPU of the delivery SMTP client alone: pre-built 10 KB copies over pipelining connections to ``smtp-sink``.

    python -m bench.smtp_client [--copies 20000] [--connections 8]

Prints the event loop's thread CPU per copy (``Connection.send_stream`` on each connection, no database,
rendering or signing). To compare two versions of the client, run it alternately from two trees
(``PYTHONPATH=TREE``) in the same minutes: the machine's other load moves single runs by ±20 %.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import time

from engine.outbound.smtp import Connection, Item, Reply, dot_stuff


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _send(port: int, copies: int, connections: int) -> float:
    body = dot_stuff(b"From: a@example.fr\r\nSubject: x\r\n\r\n" + (b"x" * 76 + b"\r\n") * 128)
    items: list[Item] = [(n, f"l-bounces+{n:x}@listes.example.fr", f"m{n}@example.org", body) for n in range(copies)]
    codes: list[int] = []

    def answered(item: Item, reply: Reply) -> None:
        codes.append(reply.code)

    opened = [await Connection.open("127.0.0.1", port) for _ in range(connections)]
    started = time.thread_time()
    await asyncio.gather(*(c.send_stream(lambda: items.pop() if items else None, answered) for c in opened))
    spent = time.thread_time() - started
    if len(codes) != copies or set(codes) != {250}:
        raise RuntimeError(f"replies: {sorted(set(codes))}, {len(codes)} of {copies}")
    for connection in opened:
        await connection.quit()
    return spent / copies * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    port = _free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "1000"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        print(f"client event loop: {asyncio.run(_send(port, args.copies, args.connections)):.1f} µs of CPU a copy")
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
