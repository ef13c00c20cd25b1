"""Wrap a post whole, byte for byte, in a new ``multipart/mixed`` beside a footer part.

Used when no text part of a post can take a footer: signed or encrypted mail, a body that is not
text, a malformed multipart, a charset nobody knows. The post's own ``Content-*`` header lines and
its body are copied as they arrived (only line ends become CRLF), never parsed and written again,
so an odd but working boundary or a signature still works for the reader.
"""

from __future__ import annotations

import re
import secrets
from email.message import EmailMessage

# The email package's own test for a header line (feedparser.headerRE): what it does not match ends the head.
_HEADER_LINE = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")
_LINE_END = re.compile(rb"\r\n|\r|\n")
CONTENT_PREFIX = "content-"


def crlf(data: bytes) -> bytes:
    """Every line end as CRLF (RFC 5322 §2.3)."""
    return _LINE_END.sub(b"\r\n", data)


def split(raw: bytes) -> tuple[list[bytes], bytes]:
    """(header fields, each with its continuation lines; the body), cut where the email package cuts."""
    lines = raw.splitlines(keepends=True)
    fields: list[bytes] = []
    at = 0
    for at, line in enumerate(lines):  # noqa: B007 - ``at`` is read after the loop
        if line in (b"\r\n", b"\n", b"\r"):
            return fields, b"".join(lines[at + 1:])
        if not _HEADER_LINE.match(line):
            return fields, b"".join(lines[at:])
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields, b""


def _is_content_field(field: bytes) -> bool:
    return field.split(b":", 1)[0].strip().lower().startswith(CONTENT_PREFIX.encode())


def content_headers(head: EmailMessage) -> list[str]:
    """Names of the ``Content-*`` headers of ``head`` (they describe the body, so they move with it)."""
    return sorted({name for name in head if name.lower().startswith(CONTENT_PREFIX)})


def wrap(raw: bytes, outer_head: bytes, footer_marker: str) -> bytes:
    """The post ``raw`` as the first part of a new multipart/mixed whose second part is the footer.

    ``outer_head`` is the rewritten header block of the copy without its ``Content-*`` fields and
    without the blank line; the footer part's payload is ``footer_marker`` alone on its line.
    """
    fields, body = split(raw)
    inner = b"".join(crlf(field) for field in fields if _is_content_field(field))
    boundary = f"=_palanquee_{secrets.token_hex(12)}".encode("ascii")
    body = crlf(body)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return b"".join((
        outer_head,
        b'Content-Type: multipart/mixed; boundary="', boundary, b'"\r\n\r\n',
        b"--", boundary, b"\r\n", inner, b"\r\n", body,
        b"--", boundary, b"\r\n",
        b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
        b"Content-Disposition: inline\r\n\r\n",
        footer_marker.encode("ascii"),
        b"\r\n--", boundary, b"--\r\n",
    ))
