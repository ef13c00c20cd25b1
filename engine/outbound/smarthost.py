"""The smarthost setting read once: where outgoing mail goes and how to log in to it.

``smtp://[user:pass@]host[:port][?starttls=1][&cafile=PATH]`` or ``smtps://…`` (TLS from the first
byte). Both outgoing paths use it: the product's own notices (``mail``, smtplib) and list copies
(``delivery``, the pipelining client).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class Smarthost:
    host: str
    port: int
    implicit_tls: bool  # smtps://
    starttls: bool  # ?starttls=1
    username: str | None
    password: str
    cafile: str | None  # ?cafile=PATH: a private CA for the relay's certificate; default: the system's

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)


def parse(url: str) -> Smarthost:
    parts = urlsplit(url)
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    implicit = parts.scheme == "smtps"
    return Smarthost(
        host=parts.hostname or "localhost",
        port=parts.port or (465 if implicit else 25),
        implicit_tls=implicit,
        starttls=options.get("starttls") in ("1", "true", "yes"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password or ""),
        cafile=options.get("cafile"),
    )
