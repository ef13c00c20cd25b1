"""Internationalised domains on the way out: the A-label (``xn--…``) of an address's domain.

Members may keep an address on an internationalised domain (``jerome@plongée-13.fr``), stored as typed.
SMTP and DNS see the domain's A-label (RFC 5890 §2.3.2.1, IDNA2008 through the ``idna`` package with the
UTS #46 mapping, so that case and width variants give one name): the envelope then needs no SMTPUTF8
when the local part is ASCII (RFC 6531 §3.2 allows either label form; the A-label passes every relay),
and MX lookups and throttling groups use the name DNS knows. Only a non-ASCII *local part* needs SMTPUTF8.
"""

from __future__ import annotations

import functools

import idna

from engine.outbound.replies import Reply

__all__ = ["InvalidDomain", "ascii_address", "ascii_domain", "envelope_addresses"]


class InvalidDomain(ValueError):
    """A domain that IDNA2008 refuses (a disallowed code point, a bad label): no A-label exists."""


@functools.lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """The domain as DNS and SMTP spell it: unchanged when ASCII, else its A-labels (lowercase).

    Raises ``InvalidDomain`` when ``idna`` refuses the name (RFC 5891 §5.4)."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain.rstrip("."), uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidDomain(f"{domain!r} is not a valid internationalised domain name (IDNA2008: {exc})") from exc


def ascii_address(address: str) -> str:
    """``local@domain`` with the domain's A-label; the local part untouched (it may stay UTF-8, which
    only SMTPUTF8 carries). Raises ``InvalidDomain``."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local}@{ascii_domain(domain)}"


def envelope_addresses(sender: str, recipient: str) -> tuple[str, str] | Reply:
    """MAIL FROM and RCPT TO of a copy with A-label domains, whether or not the relay offers SMTPUTF8: an
    ASCII local part then needs SMTPUTF8 at no hop, and the form DNS knows travels. A domain IDNA2008
    refuses fails this copy alone, for good (RFC 3463 §3.2: X.1.3 bad destination address syntax, X.1.7
    bad sender address syntax), as the client's own verdict (``local``)."""
    try:
        sender = ascii_address(sender)
    except InvalidDomain as exc:
        return Reply(553, f"5.1.7 {exc}", local=True)
    try:
        recipient = ascii_address(recipient)
    except InvalidDomain as exc:
        return Reply(553, f"5.1.3 {exc}", local=True)
    return sender, recipient
