"""Binary content made transportable: parts that only BINARYMIME could carry, re-encoded once per message.

SMTP DATA carries lines of at most 998 octets ending in CRLF (RFC 5321 §4.5.3.1.6), without NUL;
8BITMIME (RFC 6152) allows 8-bit octets but nothing more. A post may still hold a part with
``Content-Transfer-Encoding: binary``, NUL bytes or longer lines. Such a part is re-encoded before
rendering: base64 for anything but text, quoted-printable for text (RFC 2045 §6). Relays rarely
offer BINARYMIME (RFC 3030; Postfix does not), so this path serves them all, and the copy's bytes
stay one join of segments. A binary part's line breaks are thus kept exactly, instead of being
turned into CRLF by serialisation.
"""

from __future__ import annotations

import base64
import binascii
import re
from email import policy
from email.message import Message
from email.parser import BytesParser

MAX_LINE = 998  # octets, without CRLF
_BINARY_CTE = re.compile(rb"^content-transfer-encoding:[ \t]*\"?binary", re.IGNORECASE | re.MULTILINE)
_OUTPUT = policy.SMTP.clone(refold_source="none")


def _long_line(data: bytes) -> bool:
    return len(data) > MAX_LINE and any(len(line) > MAX_LINE + 1 for line in data.split(b"\n"))


def may_need_reencoding(raw: bytes) -> bool:
    """Cheap test on the stored bytes: False means no part needs ``reencode``."""
    return b"\0" in raw or _BINARY_CTE.search(raw) is not None or _long_line(raw)


def _needs(part: Message) -> bool:
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().strip('"').lower()
    if cte == "binary":
        return True
    if cte in ("base64", "quoted-printable"):
        return False
    payload = part.get_payload(decode=True)
    return isinstance(payload, bytes) and (b"\0" in payload or _long_line(payload))


def _encode(part: Message) -> None:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    del part["Content-Transfer-Encoding"]
    if part.get_content_maintype() == "text":
        encoded = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True).decode("ascii")
        part["Content-Transfer-Encoding"] = "quoted-printable"
    else:
        encoded = base64.encodebytes(data).decode("ascii")
        part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(encoded)


def reencode(raw: bytes) -> bytes:
    """The message with every part that SMTP without BINARYMIME cannot carry re-encoded (7-bit)."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    changed = False
    for part in message.walk():
        if part.is_multipart() or part.get_content_type() == "message/rfc822":
            if str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "binary":
                del part["Content-Transfer-Encoding"]
                part["Content-Transfer-Encoding"] = "8bit"  # RFC 2046 §5.2.1: the contents are now 8-bit at most
                changed = True
        elif _needs(part):
            _encode(part)
            changed = True
    return message.as_bytes(policy=_OUTPUT) if changed else raw
