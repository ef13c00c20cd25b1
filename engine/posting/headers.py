"""Reading the headers of an inbound post without ever raising: whatever a sender wrote, a value comes out.

The standard library parses header values lazily and raises on some hostile ones (an RFC 2047
encoded CR/LF in a display name, for example). The intake, the posting rules and the notices read
headers only through these functions, so a malformed header becomes a refusal with a reason, never
a traceback and a 451 that makes the sender retry for days. ``put`` writes a header the list sets
without the email package parsing a value it would write back unchanged.
"""

from __future__ import annotations

import re
from email.headerregistry import Address, AddressHeader, HeaderRegistry, UnstructuredHeader
from email.message import Message
from email.utils import getaddresses
from functools import lru_cache

# Characters that may not stand in a one-line value: C0 controls, DEL, C1 controls, line separators.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def raw_values(message: Message, name: str) -> list[str]:
    """The values of header ``name`` exactly as received (folds kept, encoded words not decoded)."""
    wanted = name.lower()
    return [str(value) for key, value in message.raw_items() if key.lower() == wanted]


def unfold(value: str) -> str:
    """RFC 5322 §2.2.3 unfolding: a line break followed by white space is removed."""
    return _FOLD.sub("", value)


def one_line(value: str) -> str:
    """``value`` with every control character and line break turned into one space, trimmed."""
    return " ".join(_CONTROLS.sub(" ", value).split())


def readable(value: str) -> str:
    """Text that can be stored and encoded: raw 8-bit bytes read as UTF-8 (RFC 6532), else U+FFFD."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is not an escaped byte
        return _SURROGATES.sub("\ufffd", value)


def _decoded(raw: str) -> str:
    from email.header import decode_header, make_header

    value = unfold(readable(raw))
    try:
        return readable(str(make_header(decode_header(value))))
    except Exception:  # noqa: BLE001 - a broken encoded word is shown as it came
        return value


def texts(message: Message, name: str) -> list[str]:
    """Every value of header ``name``, decoded (RFC 2047) and flattened to one line each."""
    return [one_line(_decoded(raw)) for raw in raw_values(message, name)]


def text(message: Message, name: str, default: str = "") -> str:
    """The first value of header ``name``, decoded and on one line; ``default`` when absent."""
    found = texts(message, name)
    return found[0] if found else default


def usable_address(address: str) -> bool:
    """Whether ``address`` is an addr-spec a notice can be written to: local part, domain, no controls."""
    if not address or len(address) > 254 or _CONTROLS.search(address) or any(ch.isspace() for ch in address):
        return False
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "." not in domain.strip("."):
        return False
    # RFC 6531 allows UTF-8 in both parts; the stdlib parser does not: check the shape with letters in place.
    shape = "".join(ch if ch.isascii() else "x" for ch in address)
    try:
        parsed = Address(addr_spec=shape)
    except Exception:  # noqa: BLE001 - whatever the parser dislikes is not usable
        return False
    return bool(parsed.username and parsed.domain)


def addresses(message: Message, name: str) -> list[str]:
    """The usable addresses of header ``name`` (every value), in order; display names are ignored."""
    pairs = getaddresses([unfold(readable(raw)) for raw in raw_values(message, name)])
    return [address for _, address in pairs if usable_address(address)]


_PLAIN_VALUE = re.compile(r"[\x21-\x7e]+(?: [\x21-\x7e]+)*")  # printable ASCII words, single spaces
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
# A mailbox the email package writes back unchanged: an addr-spec of dot-atoms, or one after a phrase of atoms.
_PLAIN_MAILBOX = re.compile(rf"(?:{_ATEXT}(?: {_ATEXT})* <{_DOT_ATOM}@{_DOT_ATOM}>|{_DOT_ATOM}@{_DOT_ATOM})")


def put(message: Message, name: str, value: str) -> None:
    """``message[name] = value``, but a value the email package would parse only to write the very same line back
    (a short printable ASCII value without encoded words; for an address header, one plain mailbox) is stored as it
    is: about 60 µs a header, several per post at the intake's render check and again at delivery
    (``tests/engine/test_header_put.py`` compares the bytes written)."""
    kind = _kind(name)
    plain = len(name) + 2 + len(value) <= 78 and "=?" not in value and bool(_PLAIN_VALUE.fullmatch(value))
    if plain and (issubclass(kind, UnstructuredHeader) or (
            issubclass(kind, AddressHeader) and _PLAIN_MAILBOX.fullmatch(value))):
        message.set_raw(name, value)
    else:
        message[name] = value


@lru_cache(maxsize=256)
def _kind(name: str) -> type:
    """The email package's class for a header (its registry makes a new class at each lookup)."""
    return HeaderRegistry()[name]
