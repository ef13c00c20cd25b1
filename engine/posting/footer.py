"""The footer added to every text part a recipient reads: which list, why they receive it, how to leave.

French, as the federation's members read it. The unsubscribe link is personal (it names the
member(s) or the address, never changes after an address change) and works without logging in.
Where footers go: ``find_targets`` picks the text parts the reader sees, ``mark`` re-encodes each
one with a marker where the footer is later joined in (``render.Prepared.copy``).
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from email.message import EmailMessage, Message
from html import escape
from typing import TYPE_CHECKING

from engine.posting.mime import PROTECTED

if TYPE_CHECKING:
    from engine.posting.render import ListInfo, Personal

# A footer holds any character (list names, structure names, dashes): a text part that gets one is
# re-encoded in UTF-8 unless it already is. The reader sees the same text; only the wire form changes.
FOOTER_SAFE_CHARSETS = ("utf-8", "utf8")


@dataclass(frozen=True)
class Slot:
    """Where a personal piece is joined into a copy: the headers, or a text or HTML footer."""

    kind: str  # "headers", "text" or "html"
    charset: str


def quoted_printable(data: bytes) -> bytes:
    """Quoted-printable with CRLF line ends; ``data`` ends with a line break, so pieces concatenate."""
    return binascii.b2a_qp(data, istext=True).replace(b"\n", b"\r\n")


def _shared_note(shared_by: int) -> str:
    if shared_by <= 1:
        return ""
    return (f"Cette adresse est partagée par {shared_by} licenciés : ils reçoivent ensemble "
            "cet unique exemplaire, et le lien ci-dessous retire l’adresse de la liste pour eux tous.")


def text_head(info: ListInfo, reason: str, shared_by: int) -> str:
    """The part of the plain-text footer that depends on the reason (encoded once per reason)."""
    lines = ["", "-- ", f"Liste « {info.name} » <{info.address}>", f"Vous recevez ce message parce que : {reason}."]
    note = _shared_note(shared_by)
    if note:
        lines.append(note)
    return "\n".join(lines) + "\n"


def text_link(url: str) -> str:
    """The personal line of the plain-text footer (encoded per copy)."""
    return f"Se désabonner : {url}\n"


def html_head(info: ListInfo, reason: str, shared_by: int) -> str:
    note = _shared_note(shared_by)
    return ('<hr><div style="font-size:12px;color:#555">'
            f"<p>Liste « {escape(info.name)} » &lt;{escape(info.address)}&gt;<br>"
            f"Vous recevez ce message parce que : {escape(reason)}.</p>"
            + (f"<p>{escape(note)}</p>" if note else "") + "\n")


def html_link(url: str) -> str:
    url = escape(url, quote=True)
    return f'<p><a href="{url}">Se désabonner</a> : {url}</p></div>\n'


def text(info: ListInfo, personal: Personal) -> str:
    """Plain-text footer, ending with a line break (the signature separator "-- " first)."""
    return text_head(info, personal.reason, personal.shared_by) + text_link(personal.unsubscribe_url)


def html(info: ListInfo, personal: Personal) -> str:
    """HTML footer block, inserted before ``</body>``, ending with a line break."""
    return html_head(info, personal.reason, personal.shared_by) + html_link(personal.unsubscribe_url)


# --- where footers go ---

def footer_part(marker: str) -> EmailMessage:
    """A part of its own for the footer, when no text part of the post can take one."""
    part = EmailMessage()
    part["Content-Type"] = 'text/plain; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part["Content-Disposition"] = "inline"
    part.set_payload(marker)
    return part


def find_targets(part: Message, targets: list[Message]) -> None:
    ctype = part.get_content_type()
    if ctype in PROTECTED or ctype == "message/rfc822":
        return
    if part.is_multipart():
        payload = part.get_payload()
        children = [child for child in payload if isinstance(child, Message)] if isinstance(payload, list) else []
        if ctype == "multipart/alternative":
            for child in children:
                find_targets(child, targets)
        elif children:  # mixed, related…: the body is the first part, the rest are attachments
            find_targets(children[0], targets)
        return
    if ctype in ("text/plain", "text/html") and part.get_content_disposition() != "attachment":
        targets.append(part)


def mark(part: Message, marker: str, slots: list[Slot]) -> bool:
    """Re-encode ``part`` as quoted-printable with a footer marker; False when its text cannot be read."""
    charset = (part.get_content_charset() or "us-ascii").lower()
    text = part_text(part)
    if text is None:
        return False
    text = text.replace("\r\n", "\n")
    if charset not in FOOTER_SAFE_CHARSETS:
        charset = "utf-8"
    try:
        encoded = text.encode(charset)
    except UnicodeEncodeError:
        charset, encoded = "utf-8", text.encode("utf-8")
    html = part.get_content_type() == "text/html"
    before, after = split_html(encoded) if html else (encoded, b"")
    if before and not before.endswith(b"\n"):
        before += b"\n"
    payload = (quoted_printable(before) + marker.encode("ascii")
               + (quoted_printable(after if after.endswith(b"\n") else after + b"\n") if after else b""))
    del part["Content-Transfer-Encoding"]
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_param("charset", charset)
    part.set_payload(payload.decode("ascii").replace("\r\n", "\n"))
    slots.append(Slot("html" if html else "text", charset))
    return True


def part_text(part: Message) -> str | None:
    """The text of a text part as its reader sees it; None when its charset is unknown.

    8-bit text that declares no charset (or US-ASCII, as plain `swaks --body` and old clients send)
    is read as UTF-8 when it is valid UTF-8, else as Windows-1252, as mail clients do, rather than
    turned into replacement characters in every copy.
    """
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return None
    declared = (part.get_content_charset() or "us-ascii").lower()
    if declared in ("us-ascii", "ascii") and not raw.isascii():
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp1252", "replace")
    try:
        return raw.decode(declared, "replace")
    except LookupError:
        return None


def split_html(encoded: bytes) -> tuple[bytes, bytes]:
    """Cut an HTML body before its closing ``</body>`` (or at its end)."""
    at = encoded.lower().rfind(b"</body>")
    return (encoded, b"") if at < 0 else (encoded[:at], encoded[at:])
