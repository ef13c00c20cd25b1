"""The signing limit of the fan-out benchmark, and where a signed copy's CPU goes in one process.

The **signing limit** is the rate of copies that ``processes`` processes reach when each copy costs only its
signatures: each process loops over the engine's own signer call (``engine.posting.dkim.sign_bytes``, RSA-2048,
once a copy for DKIM, three times for DKIM + ARC) over a real copy's signed header fields, and writes one
pre-rendered copy (its MAIL, RCPT and DATA pipelined, RFC 2920) to a Postfix ``smtp-sink`` started as in the
fan-out, on the same cores, in the same run. No database, no rendering, no reply parsing: what is left is
the least a signed copy can cost here, the sink's own CPU included (``smtp-sink`` shares the two cores in
the fan-out too). The fan-out's signed copies per second divided by it says how much of the machine's
signing capacity the engine turns into copies (the target: at least 0.85).
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from multiprocessing import Manager
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

IN_FLIGHT = 32  # copies written ahead of their replies on one connection


@dataclass(frozen=True)
class Sample:
    """What the limit's processes sign and send: a copy as the fan-out's engine would, and its key."""

    key_pem: bytes
    signed: bytes  # the canonical header fields a copy's DKIM-Signature covers
    transaction: bytes  # MAIL, RCPT, DATA and the dot-stuffed copy, ended by "."


def sample(post: EmailMessage) -> Sample:
    """A signed copy of ``post`` made by the engine's renderer and signer (the bytes both loops use)."""
    from engine.posting.dkim import Signature, header_names, select
    from engine.posting.keys import Algorithm, SigningKey
    from engine.posting.render import ListInfo, Personal, prepare
    from engine.posting.signing import CopySigner

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    prepared = prepare(post.as_bytes(policy=email_policy.SMTP),
                       ListInfo(list_id=1, name="Comité directeur", local_part="cd", domain="listes.example.fr"))
    signer = CopySigner(prepared, [Signature(SigningKey("listes.example.fr", "s", Algorithm.RSA, key))])
    person = Personal(f"https://listes.example.fr/u/{'x' * 40}", f"mailto:cd-unsubscribe@listes.example.fr?subject={'x' * 40}",
                      "membre du comité directeur")
    fields = signer.fields(prepared.pieces(person)[0])
    copy = signer.copy(person, stuffed=True)
    envelope = b"MAIL FROM:<cd-bounces+abcdefghijklmnopqrstuvwxyz@listes.example.fr>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return Sample(pem, select(fields, header_names(fields)), envelope + copy + b".\r\n")


@dataclass(frozen=True)
class Limit:
    """The signing limit's outcome: copies per second, copies sent, and the CPU seconds of its processes."""

    rate: float
    copies: int
    cpu: float


def _send_signed(port: int, sample: Sample, signatures: int, seconds: float, start: Any) -> tuple[int, float, float]:
    """One process of the limit: sign and send for ``seconds``, then wait for every reply."""
    from engine.posting.dkim import sign_bytes
    from engine.posting.keys import load_private_key

    key = load_private_key(sample.key_pem.decode("ascii"))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        reader = sock.makefile("rb")
        reader.readline()  # 220
        sock.sendall(b"EHLO bench.example\r\n")
        while reader.readline()[3:4] != b" ":
            pass
        start.wait()
        sent = answered = 0
        started, cpu = time.perf_counter(), time.process_time()
        deadline = started + seconds
        while time.perf_counter() < deadline:
            for _ in range(signatures):
                sign_bytes(key, sample.signed)
            sock.sendall(sample.transaction)
            sent += 1
            while sent - answered > IN_FLIGHT:  # four replies a copy: MAIL, RCPT, DATA (354), the content
                answered += _replies(reader, 4) // 4
        while answered < sent:
            answered += _replies(reader, 4) // 4
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        sock.sendall(b"QUIT\r\n")
    return sent, elapsed, cpu


def _replies(reader: Any, count: int) -> int:
    for _ in range(count):
        line = reader.readline()
        if not line:
            raise RuntimeError("the sink closed the connection")
    return count


def signing_limit(port: int, sample: Sample, processes: int, signatures: int = 1, seconds: float = 8.0) -> Limit:
    """Copies per second of ``processes`` processes signing ``signatures`` times a copy and writing it to the
    sink listening on ``port`` (all started together; the time runs until the last reply)."""
    with Manager() as manager, ProcessPoolExecutor(processes) as pool:
        start = manager.Barrier(processes)
        outcomes = list(pool.map(_send_signed, [port] * processes, [sample] * processes, [signatures] * processes,
                                 [seconds] * processes, [start] * processes))
    copies = sum(sent for sent, _, _ in outcomes)
    return Limit(copies / max(elapsed for _, elapsed, _ in outcomes), copies, sum(cpu for _, _, cpu in outcomes))


def per_copy_breakdown(post: EmailMessage) -> str:
    """In one process: µs of CPU per copy to join it, to sign it (body hash + RSA), and the RSA operation alone."""
    import hashlib

    from engine.posting.dkim import Signature, canonical_lines, sign_bytes
    from engine.posting.keys import Algorithm, SigningKey
    from engine.posting.render import ListInfo, Personal, prepare
    from engine.posting.signing import CopySigner

    prepared = prepare(post.as_bytes(policy=email_policy.SMTP),
                       ListInfo(list_id=1, name="Comité directeur", local_part="cd", domain="listes.example.fr",
                                rewrite_from=True))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = CopySigner(prepared, [Signature(SigningKey("listes.example.fr", "s", Algorithm.RSA, key))])
    people = [Personal(f"https://listes.example.fr/u/{i:020d}", f"mailto:x{i}", "membre du CD") for i in range(300)]

    def timed(function: Any) -> float:
        started = time.process_time()
        for person in people:
            function(person)
        return (time.process_time() - started) / len(people) * 1e6

    join = timed(lambda p: prepared.copy(p, stuffed=True))
    body = timed(lambda p: signer.body.of(prepared.pieces(p)[1:]))
    signed = timed(lambda p: signer.copy(p, stuffed=True))
    rsa_only = timed(lambda p: sign_bytes(key, b"x" * 1500))
    whole = timed(lambda p: hashlib.sha256(canonical_lines(prepared.join(prepared.pieces(p)))).digest())
    return (f"per copy, one process: join {join:.0f} µs; signed copy {signed:.0f} µs, of which RSA {rsa_only:.0f} µs "
            f"and body hash {body:.0f} µs (canonicalising the whole copy instead: {whole:.0f} µs)")


def after_rsa(post: EmailMessage, copies: int = 1024) -> str:
    """µs of thread CPU of a copy's Python work (tokens, VERP address, join) alone, right after an RSA
    operation, and after 8 or 32 operations in a row: what the RSA operation's cache eviction costs the
    work that follows it (the reason delivery builds and signs copies together: engine/outbound/builder.py)."""
    from engine import tokens
    from engine.bounces import verp
    from engine.config import load_settings
    from engine.posting.dkim import sign_bytes
    from engine.posting.render import ListInfo, Personal, prepare

    settings = load_settings(environ={}, overrides={"secret_key": "bench-secret-key-0123456789"})
    prepared = prepare(post.as_bytes(policy=email_policy.SMTP),
                       ListInfo(list_id=1, name="Comité directeur", local_part="cd", domain="listes.example.fr"))
    key, verp_key = rsa.generate_private_key(public_exponent=65537, key_size=2048), verp.signing_key(settings)

    def work(n: int) -> None:
        token = tokens.make_unsubscribe_token(settings, 1, [n], email_key="a@example.net")
        verp.return_path("cd", "listes.example.fr", verp.make_token(verp_key, n))
        prepared.copy(Personal(f"https://listes.example.fr/u/{token}", f"mailto:x?subject={token}", "membre"),
                      stuffed=True)

    def timed(signed_before: int) -> float:
        spent = 0.0
        for start in range(0, copies, max(1, signed_before)):
            for _ in range(signed_before):
                sign_bytes(key, b"x" * 1500)
            started = time.thread_time()
            for n in range(start, start + max(1, signed_before)):
                work(n)
            spent += time.thread_time() - started
        return spent / copies * 1e6

    alone, each, eight, many = timed(0), timed(1), timed(8), timed(32)
    return (f"a copy's Python work (tokens, VERP, join), thread CPU: {alone:.0f} µs alone, {each:.0f} µs right after an "
            f"RSA operation, {eight:.0f} µs after 8 operations in a row, {many:.0f} µs after 32")
