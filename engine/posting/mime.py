"""Limits and repairs that make any parsed post safe to put on the wire, or a precise reason why not.

Rendering runs the same steps at intake (where a refusal becomes ``554 5.6.0 <reason>``) and at
delivery. Structure limits are checked before the expensive parse; leaves that could not travel
as they are (a NUL byte, a line over 998 octets, ``Content-Transfer-Encoding: binary``) are
re-encoded in base64, which the reader decodes to the same bytes; signed and encrypted parts are
never touched, so what cannot be repaired there is refused.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from engine.posting.header_cache import PARSE_POLICY
from engine.posting.headers import unfold

MAX_DEPTH = 100  # nested multipart or message/rfc822 levels (the email package recurses per level)
MAX_PARTS = 1000  # MIME entities in one post
MAX_LINE = 998  # octets per line, CRLF excluded (RFC 5322 §2.1.1, RFC 5321 §4.5.3.1.6)
PROTECTED = ("multipart/signed", "multipart/encrypted", "application/pkcs7-mime", "application/x-pkcs7-mime")
_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))', re.IGNORECASE)
_DELIMITER = re.compile(rb"^--([^\r\n]*)", re.MULTILINE)
_SAFE_ENCODINGS = ("quoted-printable", "base64")
_TYPE_END = re.compile(r"[;\s(]")


class Unrenderable(ValueError):
    """The post cannot be made into a valid copy; ``reason`` says why, for the sender and for staff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def count_parts(raw: bytes) -> int:
    """Delimiter lines of the boundaries the post declares: the number of its parts, without parsing it."""
    declared = {m.group(1) if m.group(1) is not None else m.group(2) for m in _BOUNDARY.finditer(raw)}
    if not declared:
        return 0
    count = 0
    for match in _DELIMITER.finditer(raw):
        line = match.group(1).rstrip(b" \t")
        if line in declared:
            count += 1
    return count


def parse(raw: bytes) -> EmailMessage:
    """Parse a post within the structure limits; ``Unrenderable`` beyond them.

    The limits are checked on a quick parse first (the compat32 policy does not parse every header,
    about ten times faster), so a hostile structure costs little before it is refused.
    """
    if count_parts(raw) > MAX_PARTS:
        raise Unrenderable(f"more than {MAX_PARTS} MIME parts")
    _check_structure(_parse(raw, policy.compat32))
    return _parse(raw, PARSE_POLICY)  # type: ignore[return-value]


def _parse(raw: bytes, with_policy: policy.Policy) -> Message:
    try:
        return BytesParser(policy=with_policy).parsebytes(raw)
    except RecursionError:
        raise Unrenderable(f"MIME parts nested more than {MAX_DEPTH} levels deep") from None


def _check_structure(message: Message) -> None:
    for parts, (_part, depth) in enumerate(entities(message), start=1):
        if depth > MAX_DEPTH:
            raise Unrenderable(f"MIME parts nested more than {MAX_DEPTH} levels deep")
        if parts > MAX_PARTS:
            raise Unrenderable(f"more than {MAX_PARTS} MIME parts")


def raw_header(part: Message, name: str) -> str | None:
    """The first value of header ``name`` as stored, without the policy's parsing (walks are hot)."""
    wanted = name.lower()
    for key, value in part.raw_items():
        if key.lower() == wanted:
            return str(value)
    return None


def content_type(part: Message) -> str:
    """``get_content_type`` read from the raw header, about a hundred times cheaper under the default
    policy (which parses the whole header at every call); the same answer for any real Content-Type."""
    value = raw_header(part, "Content-Type")
    if value is None:
        return part.get_default_type()
    ctype = _TYPE_END.split(value.strip(), maxsplit=1)[0].lower()
    return ctype if ctype.count("/") == 1 else "text/plain"


def entities(message: Message, *, skip_protected: bool = False) -> Iterator[tuple[Message, int]]:
    """Every entity with its depth, without recursion (a hostile post may nest thousands deep)."""
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        yield part, depth
        if skip_protected and content_type(part) in PROTECTED:
            continue
        children = part.get_payload()
        if isinstance(children, list):
            stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, Message))


def _too_long(text: str) -> bool:
    return any(len(line.encode("utf-8", "surrogateescape")) > MAX_LINE for line in text.splitlines())


def _reencode(part: Message) -> None:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return
    encoded = base64.encodebytes(data).decode("ascii")
    del part["Content-Transfer-Encoding"]
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(encoded)


def _needs_base64(part: Message) -> bool:
    payload = part.get_payload()
    if not isinstance(payload, str) or part.is_multipart():
        return False
    encoding = (raw_header(part, "Content-Transfer-Encoding") or "7bit").strip().lower()
    if encoding in _SAFE_ENCODINGS and not _too_long(payload):
        return False
    return encoding == "binary" or "\x00" in payload or _too_long(payload)


def _refold(part: Message) -> None:
    """Headers with a line over 998 octets are folded again (RFC 5322 §2.2.3: same meaning)."""
    items = list(part.raw_items())
    if not any(_too_long(f"{name}: {value}") for name, value in items):
        return
    for name in {name for name, _ in items}:
        del part[name]
    for name, value in items:
        if _too_long(f"{name}: {value}"):
            try:
                part[name] = unfold(value)
                continue
            except Exception:  # noqa: BLE001 - left as it was; the wire check refuses it with a reason
                pass
        part.set_raw(name, value)


def make_wire_safe(message: Message) -> None:
    """Re-encode leaves and refold headers that could not travel as they are; never inside signed parts."""
    for part, _depth in entities(message, skip_protected=True):
        ctype = content_type(part)
        if ctype in PROTECTED:
            continue
        _refold(part)
        if ctype.split("/")[0] not in ("multipart", "message") and _needs_base64(part):
            _reencode(part)


def wire_problem(data: bytes) -> str | None:
    """Why ``data`` (CRLF line ends) cannot be sent as a message over SMTP, or None."""
    if b"\x00" in data:
        return "a NUL byte where it cannot be re-encoded (RFC 2045 §2.8: mail text carries no NUL)"
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        return "a bare CR or LF where it cannot be repaired (RFC 5322 §2.3)"
    longest = max((len(line) for line in data.split(b"\r\n")), default=0)
    if longest > MAX_LINE:
        return f"a line of {longest} octets where it cannot be re-encoded (at most {MAX_LINE}, RFC 5322 §2.1.1)"
    return None
