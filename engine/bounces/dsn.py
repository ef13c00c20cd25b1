"""What a returned message says, before any judgement: its RFC 3464 per-recipient reports, the
enhanced status codes (RFC 3463) in its text, its human-readable text without the returned copy.

Pure functions over ``email.message.Message`` (the compat32 parser: flufl.bounce's detectors expect
it). Everything here tolerates malformed mail: a hostile or broken message yields less, never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, message_from_string
from email import policy as email_policy
from email.header import Header, decode_header, make_header
from email.message import Message
from email.utils import getaddresses

MAX_SCAN = 512 * 1024  # the report parts come first (RFC 6522 §3); the returned copy may be huge
MAX_TEXT = 64 * 1024

# RFC 3463 §2: class.subject.detail, subject and detail up to three digits; only the failure classes
# 4 and 5. Not part of a longer dotted number (an IP address, a version): no digit or dot before it,
# no digit or ".digit" after it.
STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
BASIC_CODE = re.compile(r"(?<![\d.])([245]\d\d)(?=[ -])")
# Bounded repetitions (RFC 5321 §4.5.3.1: local part ≤ 64, label ≤ 63 octets) keep the search linear
# in the length of a hostile text.
ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                     r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?){1,8}", re.IGNORECASE)

# Lines after which a text bounce quotes the returned message (whose words must not be judged).
RETURNED_COPY = re.compile(
    r"^\s*(?:-+ ?(?:below this line is a copy of the message|this is a copy of the message|original message"
    r"|returned message|message original|copie du message)"
    r"|-+ ?original message follows|original message follows|original message headers"
    r"|message d'origine|-+ ?the header of the original message is following"
    r"|(?:below|here) (?:is|are) (?:a copy of )?(?:the )?(?:original message|headers of the original|your message)"
    r"|(?:a )?copy of the original message (?:is )?(?:below|follows|attached)|rappel de votre message)",
    re.IGNORECASE | re.MULTILINE)

REPORT_TYPES = ("message/delivery-status", "message/global-delivery-status")  # RFC 3464, RFC 6533


@dataclass(frozen=True)
class Report:
    """One per-recipient block of a delivery-status part (RFC 3464 §2.3)."""

    recipient: str  # lower case; "" when the block names none readable
    action: str  # failed, delayed, delivered, relayed, expanded (lower case, first word)
    status: str  # "5.1.1", or "" when absent or malformed
    diagnostic: str  # Diagnostic-Code without its type, whitespace folded


def parse(data: bytes) -> Message:
    """The message, parsed from at most ``MAX_SCAN`` bytes."""
    return message_from_bytes(data[:MAX_SCAN], policy=email_policy.compat32)


def status_in(text: str) -> str:
    """The first enhanced status code in ``text``, or ""."""
    match = STATUS.search(text or "")
    return ".".join(match.groups()) if match else ""


def basic_code_in(text: str) -> str:
    """The first three-digit SMTP reply code (RFC 5321 §4.2) in ``text``, or ""."""
    match = BASIC_CODE.search(text or "")
    return match.group(1) if match else ""


def _fold(value: object) -> str:
    return " ".join(str(value or "").split())


def _address(field: str) -> str:
    """The address of an ``address-type; address`` field (rfc822 or utf-8), angle brackets tolerated."""
    _type, semicolon, value = field.partition(";")
    value = (value if semicolon else field).strip().strip("<>").strip()
    found = ADDRESS.search(value)
    return found.group(0).lower() if found else ""


def _split_blocks(text: str) -> list[Message]:
    chunks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return [message_from_string(chunk.strip() + "\n", policy=email_policy.compat32) for chunk in chunks
            if chunk.strip()]


def _decoded(part: Message) -> str:
    raw = part.get_payload(decode=True)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(part.get_payload() or "")


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a delivery-status part. The email package splits message/delivery-status
    into blocks itself, but reads message/global-delivery-status (RFC 6533) as one message whose
    headers are the first block and whose body holds the others."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _split_blocks(_decoded(part))
    blocks = [block for block in payload if isinstance(block, Message)]
    body = blocks[0].get_payload() if len(blocks) == 1 else None
    if isinstance(body, str) and body.strip():
        return [blocks[0], *_split_blocks(_decoded(blocks[0]))]
    return blocks


def reports(message: Message) -> list[Report]:
    """Every per-recipient block of the message's delivery-status parts, in order."""
    found: list[Report] = []
    for part in message.walk():
        if part.get_content_type() not in REPORT_TYPES:
            continue
        for block in _blocks(part):
            original = str(block.get("Original-Recipient", "") or "")
            final = str(block.get("Final-Recipient", "") or "")
            if not original and not final:
                continue  # the per-message block
            recipient = (_address(original) if original.lower().startswith("rfc822") else "") or _address(final)
            diagnostic = _fold(block.get("Diagnostic-Code", ""))
            diagnostic = diagnostic.partition(";")[2].strip() if ";" in diagnostic[:12] else diagnostic
            status = status_in(_fold(block.get("Status", "")))
            action = (_fold(block.get("Action", "")).lower().split() or [""])[0]
            found.append(Report(recipient, action, status, diagnostic[:1000]))
    return found


def _part_text(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = raw.decode(charset, "replace")
    except LookupError:
        text = raw.decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        text = re.sub(r"(?is)<(script|style)\b.*?</\1>|<br\s*/?>|</p>", "\n", text)
        text = re.sub(r"<[^>]*>", " ", text)
        text = re.sub(r"&lt;", "<", re.sub(r"&gt;", ">", re.sub(r"&nbsp;|&#160;", " ", text)))
    return text


def human_text(message: Message) -> str:
    """The message's own text (plain parts, else HTML ones), without any returned copy of our message."""
    plain: list[str] = []
    html: list[str] = []
    stack: list[Message] = [message]
    while stack:
        part = stack.pop(0)
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "text/rfc822-headers", *REPORT_TYPES):
            continue  # the returned copy, or the machine-readable report
        if part.is_multipart():
            payload = part.get_payload()
            stack[:0] = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
            continue
        if content_type == "text/plain":
            plain.append(_part_text(part))
        elif content_type == "text/html":
            html.append(_part_text(part))
    text = "\n".join(plain) if any(t.strip() for t in plain) else "\n".join(html)
    text = text.replace("\r\n", "\n")[:MAX_TEXT]
    cut = RETURNED_COPY.search(text)
    return text[: cut.start()] if cut else text


def header_addresses(message: Message, name: str) -> list[str]:
    """Addresses of a header such as ``X-Failed-Recipients`` (Exim), lower case."""
    values = [str(v) for v in message.get_all(name, []) or []]
    return [address.lower() for _, address in getaddresses(values) if "@" in address]


def header_text(message: Message, name: str) -> str:
    """A header's value with RFC 2047 encoded words decoded, whitespace folded ("" when absent or broken)."""
    value = message.get(name)
    if value is None:
        return ""
    try:
        if isinstance(value, Header):  # raw 8-bit bytes in a header (RFC 6532 UTF-8): read as UTF-8
            return _fold("".join(part.decode("utf-8" if charset in (None, "unknown-8bit") else charset, "replace")
                                 if isinstance(part, bytes) else part for part, charset in decode_header(value)))
        return _fold(str(make_header(decode_header(str(value)))))
    except (UnicodeError, LookupError, ValueError, TypeError):  # a hostile or broken encoded word
        return _fold(value)


# Addresses a text bounce mentions that are not the failed recipient: its own sender and recipient
# (our return path), and the mail system's own mailboxes.
NOT_RECIPIENTS = re.compile(r"^(postmaster|mailer-daemon|mail-daemon|abuse|noreply|no-reply)@|-bounces\+",
                            re.IGNORECASE)


LIST_RETURN_PATH = re.compile(r"^(.{1,64})-bounces\+[^@]*@(.+)$", re.IGNORECASE)


def own_addresses(message: Message) -> set[str]:
    """The bounce's own From, To, Sender, Reply-To and Return-Path addresses, and the addresses of the list
    whose return path it came back to (``LIST-bounces+TOKEN@domain``: ``LIST@domain`` and ``LIST-owner@domain``,
    which bounces quote as the original's To or sender)."""
    found: set[str] = set()
    for name in ("From", "To", "Sender", "Reply-To", "Return-Path", "Delivered-To", "Envelope-To"):
        found.update(header_addresses(message, name))
    for address in list(found):
        verp = LIST_RETURN_PATH.match(address)
        if verp:
            found.update({f"{verp.group(1)}@{verp.group(2)}", f"{verp.group(1)}-owner@{verp.group(2)}"})
    return found


# What precedes an address on its line when it is not a recipient: the quoted original's author ("De : …",
# "From: …") or a message identifier ("Message-ID: <…@…>", which has an address's shape).
NOT_A_RECIPIENT_BEFORE = re.compile(
    r"(?:^\W*(?:from|de|sender|reply-to|exp[ée]diteur|von|remitente|auteur|author)\s*:"
    r"|message-?id|msg-?id|references|in-reply-to)[^\n]*$", re.IGNORECASE)


def addresses_in(text: str, *, exclude: set[str]) -> list[str]:
    """Distinct addresses mentioned in a text bounce, in order, lower case, minus ``exclude``, the quoted
    author's and message identifiers."""
    found: list[str] = []
    for match in ADDRESS.finditer(text):
        address = match.group(0).strip(".").lower()
        line = text[text.rfind("\n", 0, match.start()) + 1: match.start()]
        if address in exclude or NOT_RECIPIENTS.search(address) or NOT_A_RECIPIENT_BEFORE.search(line):
            continue
        found.append(address)
    return list(dict.fromkeys(found))[:20]
