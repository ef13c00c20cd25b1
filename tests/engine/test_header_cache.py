"""Rendering with each header value parsed and folded once (``engine/posting/header_cache.py``) gives the very bytes
the email package's own policy gives, and the same refusals, for the corpus and hostile headers, first seen or seen
again."""

from __future__ import annotations

import dataclasses
import re
from email import policy
from pathlib import Path

import pytest

from engine.posting import header_cache, mime, render
from engine.posting.render import ListInfo, Personal

POSTS = Path(__file__).resolve().parent.parent / "data" / "posts"
INFO = ListInfo(7, "Comité directeur – Provence", "comite_directeur.comite", "listes.example.fr",
                subject_prefix="[CODIR]", help_url="https://listes.example.fr/aide", rewrite_from=True)
INFOS = [INFO, dataclasses.replace(INFO, rewrite_from=False, reply_to_list=True),
         dataclasses.replace(INFO, author_in_cc=True, name="Tous les membres", subject_prefix=""),
         dataclasses.replace(INFO, announce_only=True, subject_prefix="[Comité]")]
HEAD = (b"To: <comite_directeur.comite@listes.example.fr>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
        b"Message-Id: <a1@example.fr>\r\nSubject: Sortie\r\n")
BODY = b"\r\nLa plongee de dimanche est confirmee.\r\n"
HOSTILE = [
    b"From: <elodie.dupre@example.fr>\r\n" + HEAD + BODY,
    b"From: =?utf-8?q?=C3=89lodie_Dupr=C3=A9?= <elodie@example.fr>\r\n" + HEAD
    + b'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="iso-8859-1"; format=flowed\r\n' + BODY,
    b"From: =?utf-8?q?a=0D=0ABcc:_x@evil.example?= <a@example.fr>\r\n" + HEAD + BODY,  # an encoded CR/LF
    b'From: "Dupont, Jean (CODIR)" <jean@example.fr>, other@example.fr\r\n' + HEAD
    + b"Content-Type: text/plain; charset=\r\nReferences: " + b" ".join(b"<r%d@x.fr>" % n for n in range(80)) + BODY,
    b"From: a@b\r\n" + HEAD + b"Content-Type: text/plain; charset=unknown-8bit\r\nContent-Type: text/html\r\n" + BODY,
    b"From: \xc3\x89lodie <\xc3\xa9lodie@example.fr>\r\n" + HEAD + b"Content-Type: text/plain; charset=utf-8\r\n" + BODY,
    b"From: <>\r\nReply-To: comite_directeur.comite@listes.example.fr\r\nCc: x@example.fr\r\n" + HEAD + BODY,
]
BOUNDARY = re.compile(rb"=_palanquee_[0-9a-f]+")  # a wrapped post's new boundary is random
def nested(levels: int) -> bytes:
    """A post of ``levels`` multiparts one inside the other: refused (``mime.MAX_DEPTH``)."""
    head = b"From: <a@example.fr>\r\n" + HEAD + b"MIME-Version: 1.0\r\n"
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n) for n in range(levels))
    closing = b"".join(b"\r\n--b%d--\r\n" % n for n in reversed(range(levels)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nx\r\n" + closing


HOSTILE.append(nested(mime.MAX_DEPTH + 2))
PERSONAL = Personal("https://listes.example.fr/u/abc", "mailto:comite-leave@listes.example.fr", "membre")


def rendered(raw: bytes, info: ListInfo) -> bytes | str:
    """The copy's bytes (its random boundary made fixed), or the refusal's kind and reason."""
    try:
        return BOUNDARY.sub(b"=_palanquee_B", render.prepare(raw, info).copy(PERSONAL))
    except Exception as exc:  # noqa: BLE001 - the refusal itself is compared
        return f"{type(exc).__name__}: {exc}"


def cases() -> list[bytes]:
    return [path.read_bytes() for path in sorted(POSTS.glob("*.eml"))] + HOSTILE


@pytest.mark.parametrize("info", INFOS, ids=["dmarc", "reply-to-list", "cc", "announce"])
def test_copies_are_byte_for_byte_those_of_the_email_packages_policy(info: ListInfo,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mime, "PARSE_POLICY", policy.default)
    expected = [rendered(raw, info) for raw in cases()]
    monkeypatch.setattr(mime, "PARSE_POLICY", header_cache.PARSE_POLICY)
    first = [rendered(raw, info) for raw in cases()]
    again = [rendered(raw, info) for raw in cases()]  # every header value now found in the cache
    assert first == expected
    assert again == expected
    assert any(isinstance(copy, str) for copy in expected) and any(isinstance(copy, bytes) for copy in expected)


def test_the_cache_is_bounded_and_keeps_the_most_recent_values() -> None:
    registry = header_cache.CachedRegistry()
    first = registry("Subject", "x0")
    assert registry("Subject", "x0") is first  # parsed once
    for n in range(1, header_cache.CACHED + 1):
        registry("Subject", f"x{n}")
    assert len(registry._made) == header_cache.CACHED
    assert registry("Subject", "x0") is not first  # the oldest went first
    assert registry("Subject", "x0") == first


def test_a_header_object_folds_once_per_policy() -> None:
    header = header_cache.PARSE_POLICY.header_factory("From", "Jean Dupont via Bureau <bureau@listes.example.fr>")
    narrow = policy.SMTP.clone(max_line_length=20)
    assert header.fold(policy=policy.SMTP) == policy.default.header_factory("From", str(header)).fold(
        policy=policy.SMTP)
    assert header.fold(policy=narrow) != header.fold(policy=policy.SMTP)  # each policy its own fold
    assert header.fold(policy=narrow) == policy.default.header_factory("From", str(header)).fold(policy=narrow)
