"""DMARC-safe posting: the author's DMARC policy (RFC 7489) and the From rewriting lists do for it (RFC 7960 §4).

A list re-sends from its own servers and changes the message (subject prefix, footer), so the author's
SPF and DKIM no longer align with their From domain; under ``p=quarantine`` or ``p=reject`` receivers
would bin or refuse every copy. The list then sends ``From: "Author via List" <list address>`` (aligned
with the list domain's DKIM signature) and keeps the author in Reply-To (or Cc) and X-Original-From.
Policies are looked up through the engine's resolver and cached for their TTL.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header, decode_header, make_header
from email.headerregistry import Address
from email.message import Message
from email.utils import getaddresses
from functools import lru_cache
from typing import TYPE_CHECKING

from engine import clock, resolver
from engine.posting.headers import put as put_header
from engine.posting.headers import readable, usable_address

if TYPE_CHECKING:
    from engine.posting.render import ListInfo


class Mode:
    AUTOMATIC = "automatic"  # rewrite when the author's domain publishes p=quarantine or p=reject
    ALWAYS = "always"  # the default for new lists (see docs/deliverability.md)
    NEVER = "never"
    ALL = (AUTOMATIC, ALWAYS, NEVER)


class AuthorIn:
    REPLY_TO = "reply-to"
    CC = "cc"
    ALL = (REPLY_TO, CC)


@dataclass(frozen=True)
class Policy:
    """A domain's DMARC record as it applies to the author domain; ``p`` is ``none`` when there is none."""

    domain: str  # where the record was found ("" when none)
    p: str  # none, quarantine, reject, or temperror when DNS failed
    adkim: str = "r"
    aspf: str = "r"
    published: bool = False


@lru_cache(maxsize=1)
def _suffixes():  # type: ignore[no-untyped-def]
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the registered domain (``mail.orange.fr`` → ``orange.fr``) by the Public Suffix List."""
    domain = domain.lower().rstrip(".")
    return str(_suffixes().privatesuffix(domain) or domain)


def aligned(domain: str, author_domain: str, mode: str = "r") -> bool:
    """RFC 7489 §3.1: strict is equality, relaxed compares organizational domains."""
    domain, author_domain = domain.lower().rstrip("."), author_domain.lower().rstrip(".")
    if mode == "s":
        return domain == author_domain
    return bool(domain) and organizational_domain(domain) == organizational_domain(author_domain)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_TAG = re.compile(r"^\s*([a-zA-Z]+)\s*=\s*(.*?)\s*$")


def parse_record(text: str) -> dict[str, str] | None:
    """Tags of a DMARC record, or None when ``text`` is not one (RFC 7489 §6.3: starts with ``v=DMARC1``)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        match = _TAG.match(part)
        if match:
            tags.setdefault(match.group(1).lower(), match.group(2))
    if tags.get("v") != "DMARC1" or not text.lstrip().startswith("v"):
        return None
    return tags


_cache: dict[str, tuple[datetime, Policy]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def _record_at(domain: str) -> tuple[dict[str, str] | None, int]:
    answer = resolver.current().lookup(f"_dmarc.{domain}", "TXT")
    records = [tags for text in answer.records if (tags := parse_record(text)) is not None]
    return (records[0] if len(records) == 1 else None), answer.ttl  # §6.6.3: several records count as none


def lookup(author_domain: str, *, fresh: bool = False) -> Policy:
    """The policy that applies to ``author_domain`` (its own record, else its organizational domain's ``sp=``);
    ``fresh`` skips the cache (``palanquee doctor`` checks what is published now)."""
    domain = author_domain.lower().rstrip(".")
    now = clock.now()
    with _lock:
        cached = _cache.get(domain)
    if cached is not None and cached[0] > now and not fresh:
        return cached[1]
    try:
        tags, ttl = _record_at(domain)
        found_at = domain
        organizational = organizational_domain(domain)
        if tags is None and organizational != domain:
            tags, ttl = _record_at(organizational)
            found_at = organizational
            if tags is not None and "sp" in tags:
                tags = {**tags, "p": tags["sp"]}
        # ``pct`` (RFC 7489 §6.3) is ignored on purpose: a receiver samples, so any copy may meet the full
        # policy; p=reject with pct=0 is treated as reject (docs/deliverability.md).
        policy = (Policy("", "none") if tags is None else
                  Policy(found_at, tags.get("p", "none").lower(), tags.get("adkim", "r").lower(),
                         tags.get("aspf", "r").lower(), published=True))
    except resolver.TemporaryDnsError:
        policy, ttl = Policy("", "temperror"), 60
    with _lock:
        _cache[domain] = (now + timedelta(seconds=max(ttl, 1)), policy)
    return policy


def raw_from(headers: Message) -> list[str]:
    """The From values as received: the email package's parsed headers raise on an encoded CR/LF."""
    return [str(value) for name, value in headers.raw_items() if name.lower() == "from"]


def author_address(headers: Message) -> tuple[str, str]:
    """(display name, address) of the first From mailbox, the name decoded (RFC 2047) and stripped of
    control characters; ("", "") when there is none."""
    # The first usable address, as the posting rules read the author ("Dupont, Jean <j@x.fr>" gives j@x.fr).
    found = [(name, address) for name, address in getaddresses(raw_from(headers)) if usable_address(address)]
    if not found:
        return "", ""
    name, address = (_eight_bit(part) for part in found[0])
    with contextlib.suppress(ValueError, LookupError):  # a broken encoded word is shown as it came
        name = str(make_header(decode_header(name)))
    return _CONTROL.sub(" ", name).strip(), address


def _eight_bit(text: str) -> str:
    """Raw 8-bit header bytes (kept by the parser as surrogates) read as UTF-8, else Windows-1252, as mail
    clients read them (and as render.part_text reads undeclared 8-bit bodies)."""
    if text.isascii() or not any("\udc80" <= char <= "\udcff" for char in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def should_rewrite(mode: str, author: str) -> bool:
    """Whether copies of a post by ``author`` get the list's From (``automatic``: p=quarantine/reject, or unknown)."""
    if mode == Mode.ALWAYS:
        return True
    if mode != Mode.AUTOMATIC or "@" not in author:
        return False
    return lookup(author.rpartition("@")[2]).p in ("quarantine", "reject", "temperror")


def rewrite_from(message: Message, info: ListInfo) -> None:
    """From: "Name via List" <list address>; the author goes to Reply-To (or Cc) and X-Original-From."""
    name, address = author_address(message)  # control characters removed: an encoded CR/LF breaks no header
    if not address:
        return
    shown = readable(name or address)  # raw 8-bit text read as UTF-8: the display name is re-encoded
    list_name = _CONTROL.sub(" ", info.name).strip()
    del message["From"]
    put_header(message, "From", str(Address(display_name=f"{shown} via {list_name}", addr_spec=info.address)))
    del message["X-Original-From"]
    author, put = _mailbox(name, address, message)
    put("X-Original-From", author)
    replies_to_list = any(info.address.lower() in str(v).lower() for k, v in message.raw_items()
                          if k.lower() == "reply-to")
    if info.author_in_cc or replies_to_list:
        cc = [_eight_bit(str(value)) for k, value in message.raw_items() if k.lower() == "cc"]
        if not any(address.lower() in value.lower() for value in cc):
            del message["Cc"]
            put("Cc", ", ".join([*cc, author]))
    elif "Reply-To" not in message:  # an author's own Reply-To is theirs to choose
        put("Reply-To", author)


def _mailbox(name: str, address: str, message: Message) -> tuple[str, Callable[[str, str], None]]:
    """The author's mailbox as a header value, and how to set it. A UTF-8 local part (RFC 6532), which
    the email package refuses to write, is kept as raw 8-bit text like the post's own headers (the copy
    then goes with SMTPUTF8); anything else is written by the email package."""
    try:
        return str(Address(display_name=name, addr_spec=address)), lambda key, value: put_header(message, key, value)
    except ValueError:
        shown = Header(readable(name), "utf-8").encode() + " " if name else ""
        raw = f"{shown}<{address}>".encode("utf-8", "surrogateescape").decode("ascii", "surrogateescape")
        return raw, message.set_raw
