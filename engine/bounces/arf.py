"""Read a complaint report (ARF, RFC 5965) from a feedback loop: which of our copies it is about.

A report is ``multipart/report; report-type=feedback-report`` (RFC 5965 §2): a human part, a
``message/feedback-report`` part (``Feedback-Type``, ``Original-Mail-From``… §3) and the copy the recipient
complained about, whole (``message/rfc822``) or its header (``text/rfc822-headers``). Providers redact the
recipient (Yahoo's CFL replaces it), so an address written in the report is never read: only what the engine
put in the copy is, the signed unsubscribe token of ``List-Unsubscribe`` and the signed VERP token of the return
path. This module only reads; ``complaints`` checks the signatures and acts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

REPORT_TYPE = "feedback-report"  # RFC 5965 §2 (b)
FEEDBACK_PART = "message/feedback-report"  # RFC 5965 §3
RETURNED_PARTS = ("message/rfc822", "text/rfc822-headers")  # RFC 5965 §2 (d); RFC 6522 §4
MAX_TOKENS = 8  # a report names one copy: a few candidates at most, never a list to try

# The https link ``…/u/TOKEN`` and the mailto ``?subject=TOKEN`` of List-Unsubscribe (engine/posting/render.py).
_UNSUBSCRIBE = re.compile(r"/u/([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)?)"
                          r"|[?&]subject=([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)?)", re.IGNORECASE)
# ``LIST-bounces+TOKEN@domain`` or ``bounces+TOKEN@domain`` (engine/bounces/verp.py): the token after the ``+``.
_VERP = re.compile(r"bounces\+([0-9a-f]{1,16}\.[0-9a-f]{10})@", re.IGNORECASE)


@dataclass(frozen=True)
class Report:
    feedback_type: str  # abuse, fraud, virus, other… (RFC 5965 §7.3), lower case; "" when absent
    unsubscribe_tokens: tuple[str, ...]  # from the returned copy's List-Unsubscribe, in order
    verp_tokens: tuple[str, ...]  # from Original-Mail-From, then the returned copy's Return-Path
    message_id: str  # the returned copy's Message-ID, "" when absent


def is_feedback_report(message: Message) -> bool:
    """An ARF report: labelled so (RFC 5965 §2), or carrying its machine-readable part under another label
    (some feedback loops send ``multipart/mixed``)."""
    if message.get_content_type() == "multipart/report" and \
            str(message.get_param("report-type", "")).lower() == REPORT_TYPE:
        return True
    return any(part.get_content_type() == FEEDBACK_PART for part in _parts(message))


def _parts(message: Message) -> list[Message]:
    """The report's own parts, not those of a message inside it: a post that attached a report, returned in
    a bounce, is a bounce (hence never ``walk()``)."""
    payload = message.get_payload() if message.is_multipart() else None
    return [part for part in payload if isinstance(part, Message)] if isinstance(payload, list) else []


def read(message: Message) -> Report:
    """What a feedback report says about the copy (tokens not yet checked); empty fields when unreadable."""
    fields = _feedback_fields(message)
    returned = _returned_header(message)
    listed = " ".join(_values(returned, "List-Unsubscribe"))
    unsubscribe = [a or b for a, b in _UNSUBSCRIBE.findall(listed)]
    envelope = " ".join([*_values(fields, "Original-Mail-From"), *_values(returned, "Return-Path")])
    verp = [token.lower() for token in _VERP.findall(envelope)]
    return Report(feedback_type=" ".join(_values(fields, "Feedback-Type")[:1]).strip().lower()[:32],
                  unsubscribe_tokens=tuple(dict.fromkeys(unsubscribe))[:MAX_TOKENS],
                  verp_tokens=tuple(dict.fromkeys(verp))[:MAX_TOKENS],
                  message_id=" ".join(_values(returned, "Message-ID")[:1]).strip()[:255])


def _values(headers: Message | None, name: str) -> list[str]:
    if headers is None:
        return []
    try:
        return [" ".join(str(value).split()) for value in headers.get_all(name, [])]
    except Exception:  # noqa: BLE001 - a header the parser refuses says nothing
        return []


def _feedback_fields(message: Message) -> Message | None:
    """The fields of the ``message/feedback-report`` part (the parser reads them as a header block)."""
    for part in _parts(message):
        if part.get_content_type() != FEEDBACK_PART:
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        if isinstance(payload, str):
            return HeaderParser(policy=compat32).parsestr(payload)
    return None


def _returned_header(message: Message) -> Message | None:
    """The header of the returned copy: the first ``message/rfc822`` or ``text/rfc822-headers`` part."""
    for part in _parts(message):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(part.get_payload())
            return HeaderParser(policy=compat32).parsestr(text.lstrip("\r\n"), headersonly=True)
    return None
