"""The headers of a list copy: each step rewrites the parsed post in place, in the order of ``HEADER_STEPS``.

Inbound list headers go first (RFC 2369 §4: a list replaces its parent's), then the subject prefix,
the missing Date and Message-ID, the list's Reply-To, the list headers (RFC 2369, RFC 2919, RFC
8058) and, last, the DMARC From rewriting (``dmarc.py``). A step that needs more than the post and
the list's settings does not belong here.
"""

from __future__ import annotations

from collections.abc import Callable
from email.header import Header
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from engine.notices import safe_header_value
from engine.posting import dmarc, headers
from engine.posting.mime import Unrenderable

if TYPE_CHECKING:
    from engine.posting.render import ListInfo

# Headers a post may carry that only the list may set (RFC 2369 §4: a list replaces its parent's).
REMOVED_HEADERS = (
    "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Post", "List-Help", "List-Owner",
    "List-Subscribe", "List-Archive", "Precedence", "X-Loop", "Return-Path", "Delivered-To",
    "DKIM-Signature", "Bcc",
)


def _remove_list_headers(message: EmailMessage, info: ListInfo, id_domain: str) -> None:
    for name in REMOVED_HEADERS:
        del message[name]


def _prefix_subject(message: EmailMessage, info: ListInfo, id_domain: str) -> None:
    """The prefix goes before the subject as it came (encoded words untouched, so an encoded CR/LF
    stays encoded, as its sender wrote it); nothing is added when the subject already carries it."""
    prefix = safe_header_value(info.subject_prefix).strip()
    if not prefix or prefix in headers.text(message, "Subject"):
        return
    original = [value.strip() for value in headers.raw_values(message, "Subject")][:1]
    del message["Subject"]
    if prefix.isascii():
        encoded = prefix
    else:  # RFC 2047; the space goes inside when an encoded word follows (§6.2 drops the one between)
        glued = bool(original) and original[0].startswith("=?")
        encoded = Header(prefix + (" " if glued else ""), "utf-8").encode()
    message.set_raw("Subject", f"{encoded} {original[0]}" if original and original[0] else encoded)


def _add_date_and_id(message: EmailMessage, info: ListInfo, id_domain: str) -> None:
    """Only when missing: the original Message-ID is kept on every copy so that replies thread."""
    if "Date" not in message:
        message["Date"] = formatdate(localtime=False)
    if "Message-ID" not in message:
        message["Message-ID"] = make_msgid(domain=id_domain)


def _reply_to(message: EmailMessage, info: ListInfo, id_domain: str) -> None:
    if info.reply_to_list:
        del message["Reply-To"]
        headers.put(message, "Reply-To", info.address)


def _add_list_headers(message: EmailMessage, info: ListInfo, id_domain: str) -> None:
    name = safe_header_value(info.name)
    put = headers.put  # a short ASCII value is stored as it is (the email package would write it back unchanged)
    put(message, "List-Id", f"{_phrase(name)} <{info.local_part}.{info.domain}>")  # RFC 2919
    put(message, "List-Post", "NO" if info.announce_only else f"<mailto:{info.address}>")  # RFC 2369 §3.4
    put(message, "List-Help", f"<{info.help_url}>" if info.help_url else (
        f"<mailto:{info.local_part}-request@{info.domain}?subject=help>"))
    put(message, "List-Owner", f"<mailto:{info.local_part}-owner@{info.domain}>")
    put(message, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")  # RFC 8058 §3.1
    put(message, "Precedence", "list")
    put(message, "X-Loop", info.address)


def _rewrite_from(message: EmailMessage, info: ListInfo, id_domain: str) -> None:
    """DMARC: "Author via List" <list address> when the author's domain demands it (dmarc.py)."""
    if not info.rewrite_from:
        return
    try:
        dmarc.rewrite_from(message, info)
    except Exception as exc:  # noqa: BLE001 - the intake refuses such a post with this reason
        raise Unrenderable(f"the author's address cannot be written in the list's From, Reply-To or Cc "
                           f"(DMARC rewriting: {exc})") from exc


HeaderStep = Callable[[EmailMessage, "ListInfo", str], None]
# Order matters: inbound list headers go before ours are added; the DMARC From rewriting comes last.
HEADER_STEPS: tuple[HeaderStep, ...] = (
    _remove_list_headers, _prefix_subject, _add_date_and_id, _reply_to, _add_list_headers, _rewrite_from,
)


def _phrase(name: str) -> str:
    """A display name as a quoted string, or an RFC 2047 encoded word when it is not ASCII."""
    if name.isascii():
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return Header(name, "utf-8").encode()
