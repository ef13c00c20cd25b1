"""Mail the product sends itself (confirmations, notices): to the smarthost, or to the local capture.

This is the minimal real path: one SMTP transaction per message through ``smtplib`` when
``PALANQUEE_SMARTHOST`` is set, otherwise a Maildir in the instance folder that the demo and the
tests read. List traffic goes through the outbox and the delivery workers instead.
"""

from __future__ import annotations

import mailbox
import os
import smtplib
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

from engine.config import Settings
from engine.outbound import idn, smarthost


def send(settings: Settings, message: EmailMessage, *, sender: str | None = None) -> None:
    """Send ``message`` now (Date and Message-ID are added when missing)."""
    if "Date" not in message:
        message["Date"] = formatdate(localtime=False)
    if "Message-ID" not in message:
        domain = urlsplit(settings.base_url).hostname or "localhost"
        message["Message-ID"] = make_msgid(domain=domain)
    _a_labels(message)
    if settings.smarthost:
        _send_smtp(settings.smarthost, message, sender)
    else:
        capture(settings.capture_dir, message)


def _a_labels(message: EmailMessage) -> None:
    """To and Cc with their domains' A-labels (``idn``): the email package would write a U-label as an
    encoded word, which no address may hold (RFC 2047 §5), and smtplib would demand SMTPUTF8 for it.
    Raises ``idn.InvalidDomain`` for a domain IDNA2008 refuses."""
    for name in ("To", "Cc"):
        header = message.get(name)
        addresses = getattr(header, "addresses", ())
        if all(address.domain.isascii() for address in addresses):
            continue
        del message[name]
        message[name] = [Address(address.display_name, address.username, idn.ascii_domain(address.domain))
                         for address in addresses]


def capture(folder: Path, message: EmailMessage | bytes) -> str:
    """Store a message in the capture Maildir; returns its key."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for sub in ("tmp", "new", "cur"):  # Maildir(create=True) skips these when the folder exists
        (folder / sub).mkdir(parents=True, exist_ok=True)
    box = mailbox.Maildir(str(folder), create=True)
    data = message if isinstance(message, bytes) else message.as_bytes(policy=policy.SMTP)
    return str(box.add(data))


def read_captured(folder: Path) -> list[EmailMessage]:
    """Every captured message, oldest first (parsed with the default policy)."""
    if not (folder / "cur").exists():  # created last by ``capture``: until then the Maildir is being made
        return []
    box = mailbox.Maildir(str(folder), create=False)
    parser = BytesParser(policy=policy.default)
    entries = []
    for key in box.iterkeys():
        path = Path(folder) / ("new" if (Path(folder) / "new" / key).exists() else "cur") / key
        entries.append((path.stat().st_mtime_ns, key, box.get_bytes(key)))
    return [parser.parsebytes(data) for _, _, data in sorted(entries)]


def _smtp_client(url: str) -> smtplib.SMTP:
    """An open, logged-in smtplib session to the smarthost (the product's own, low-volume mail)."""
    relay = smarthost.parse(url)
    context = relay.tls_context()
    if relay.implicit_tls:
        client: smtplib.SMTP = smtplib.SMTP_SSL(relay.host, relay.port, context=context, timeout=30)
    else:
        client = smtplib.SMTP(relay.host, relay.port, timeout=30)
    try:
        if relay.starttls:
            client.starttls(context=context)
        if relay.username:
            client.login(relay.username, relay.password)
    except BaseException:
        client.close()
        raise
    return client


def _send_smtp(url: str, message: EmailMessage, sender: str | None) -> None:
    with _smtp_client(url) as client:
        client.send_message(message, from_addr=sender)


def send_raw(settings: Settings, data: bytes, *, sender: str, recipients: list[str]) -> None:
    """Pass an existing message on unchanged (mail to a list's owner): smarthost or capture."""
    if settings.smarthost:
        with _smtp_client(settings.smarthost) as client:
            client.sendmail(sender, [idn.ascii_address(to) for to in recipients], data)
    else:
        envelope = f"Return-Path: <{sender}>\r\nDelivered-To: {', '.join(recipients)}\r\n".encode()
        capture(settings.capture_dir, envelope + data)


def captured_keys(folder: Path) -> list[str]:
    """Keys of the captured messages, newest first (Maildir names start with the delivery time)."""
    names: list[tuple[str, str]] = []
    for sub in ("new", "cur"):
        directory = folder / sub
        if directory.is_dir():
            names += [(name, sub) for name in (entry.name for entry in os.scandir(directory))]
    return [name.split(":", 1)[0] for name, _ in sorted(names, key=_maildir_order, reverse=True)]


def _maildir_order(item: tuple[str, str]) -> tuple[float, str]:
    name = item[0]
    head = name.split(".", 2)
    try:
        stamp = float(head[0]) + float(head[1].lstrip("MP").split("P")[0].split("Q")[0] or 0) / 1e6
    except (ValueError, IndexError):
        stamp = 0.0
    return stamp, name


def read_one_captured(folder: Path, key: str, headers_only: bool = False) -> EmailMessage | None:
    """One captured message by key (None when there is no such key)."""
    if not key or "/" in key or key.startswith("."):
        return None
    box = mailbox.Maildir(str(folder), create=False)
    try:
        data = box.get_bytes(key)
    except KeyError:
        return None
    if headers_only:
        return BytesHeaderParser(policy=policy.default).parsebytes(data)
    return BytesParser(policy=policy.default).parsebytes(data)
