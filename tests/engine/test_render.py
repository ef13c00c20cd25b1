"""Rendering over a corpus of real-world-shaped posts: the reader's text is unchanged apart from the footer."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from engine.notices import HeaderInjection
from engine.posting import footer
from engine.posting.render import ListInfo, Personal, parse, prepare

POSTS = Path(__file__).resolve().parent.parent / "data" / "posts"
INFO = ListInfo(7, "Comité directeur – Provence", "comite_directeur.comite", "listes.example.fr",
                subject_prefix="[CD Provence]")
ALICE = Personal("https://listes.example.fr/u/ALICE-TOKEN", "mailto:cd-unsubscribe@listes.example.fr?subject=A",
                 "membre du comité directeur — Comité régional Provence")
BOB = Personal("https://listes.example.fr/u/BOB-TOKEN", "mailto:cd-unsubscribe@listes.example.fr?subject=B",
               "abonné(e) par l’administrateur", shared_by=3)
CORPUS = sorted(p.name for p in POSTS.glob("*.eml"))


def _text(part) -> str:  # type: ignore[no-untyped-def]
    from engine.posting.render import part_text

    return (part_text(part) or "").replace("\r\n", "\n")


def _leaves(message: EmailMessage) -> list:  # type: ignore[type-arg]
    return [part for part in message.walk() if not part.is_multipart()]


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_message_keeps_its_text_and_attachments(name: str) -> None:
    raw = (POSTS / name).read_bytes()
    original = parse(raw)
    prepared = prepare(raw, INFO)
    for personal in (ALICE, BOB):
        data = prepared.copy(personal)
        copy = parse(data)
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        for header in ("From", "Date", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
                       "List-Post", "List-Help", "List-Owner", "Precedence", "X-Loop"):
            assert len(copy.get_all(header, [])) == 1, header
        assert copy["Message-ID"] == original["Message-ID"]  # threading keeps working
        assert str(copy["Subject"]).startswith("[CD Provence] ")
        assert str(copy["Subject"]).endswith(str(original["Subject"]))
        originals = {id(p): p for p in _leaves(original)}
        copied = _leaves(copy)
        footers = [p for p in copied if personal.unsubscribe_url in (_safe_text(p) or "")]
        assert footers, "every copy carries the personal link in a text part"
        for before, after in _paired(list(originals.values()), copied):
            if before.get_content_maintype() != "text" or before.get_content_disposition() == "attachment":
                assert after.get_content() == before.get_content()  # attachments byte for byte
            elif before.get_content_type() == "text/plain":
                text = _text(after)
                expected = _text(before)
                expected += "" if expected.endswith("\n") else "\n"
                if personal.unsubscribe_url in text:
                    assert text == expected + footer.text(INFO, personal)
                else:
                    assert text == _text(before)
            else:  # HTML: the same document with the footer block before </body>
                html = _text(after)
                assert html.replace(footer.html(INFO, personal), "").replace("\n", "") == \
                    _text(before).replace("\n", "")


def _safe_text(part) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return _text(part) if part.get_content_maintype() == "text" else None
    except LookupError:
        return None


def _paired(before: list, after: list) -> list:  # type: ignore[type-arg]
    """Match the original leaves with the copy's (a wrapped message gains one footer part at the end)."""
    assert len(after) in (len(before), len(before) + 1)
    return list(zip(before, after[: len(before)], strict=True))


def test_signed_part_is_untouched_and_the_footer_is_a_separate_part() -> None:
    raw = (POSTS / "signed-smime.eml").read_bytes()
    signed = (POSTS / "signed-smime.part").read_bytes()
    data = prepare(raw, INFO).copy(ALICE)
    assert b"\r\n------SIGNED-BOUNDARY\r\n" + signed + b"\r\n------SIGNED-BOUNDARY\r\n" in data
    copy = parse(data)
    assert copy.get_content_type() == "multipart/mixed"
    first, footer_part = copy.get_payload()
    assert first.get_content_type() == "multipart/signed"
    assert ALICE.unsubscribe_url in footer_part.get_content()


def test_charset_without_french_letters_is_reencoded_in_utf8() -> None:
    copy = parse(prepare((POSTS / "iso-2022-jp.eml").read_bytes(), INFO).copy(ALICE))
    part = copy.get_body(("plain",))
    assert part.get_content_charset() == "utf-8"
    assert _text(part).startswith("こんにちは、ダイビングの件です。\n")
    assert "Se désabonner" in _text(part)


@pytest.mark.parametrize("name", CORPUS)
def test_copies_differ_only_in_their_personal_parts(name: str) -> None:
    prepared = prepare((POSTS / name).read_bytes(), INFO)
    alice, bob = prepared.copy(ALICE), prepared.copy(BOB)
    assert b"ALICE-TOKEN" in alice and b"ALICE-TOKEN" not in bob and b"BOB-TOKEN" in bob
    assert any("partagée par 3 licenciés" in _text(part) for part in _leaves(parse(bob)))
    # Another recipient with the same reason: byte for byte Alice's copy but for the link and mailto token.
    carol = Personal(ALICE.unsubscribe_url.replace("ALICE", "CAROL"), ALICE.unsubscribe_mailto[:-1] + "C",
                     ALICE.reason)
    assert prepared.copy(carol) == alice.replace(b"ALICE-TOKEN", b"CAROL-TOKEN").replace(b"subject=A", b"subject=C")
    # With another reason the text up to each footer is the same; only the footers differ.
    heads = [[_text(part).split("\n-- \n")[0].split("<hr><div")[0] for part in _leaves(parse(copy))]
             for copy in (alice, bob)]
    assert heads[0] == heads[1]


def test_inbound_list_headers_are_replaced() -> None:
    message = EmailMessage()
    message["From"] = "a@example.fr"
    message["Subject"] = "x"
    message["List-Unsubscribe"] = "<https://evil.example/u>"
    message["List-Post"] = "<mailto:other@example.org>"
    message["X-Loop"] = "other@example.org"
    message["Bcc"] = "hidden@example.org"
    message.set_content("hello\n")
    copy = parse(prepare(message.as_bytes(), INFO).copy(ALICE))
    assert "evil" not in copy["List-Unsubscribe"]
    assert copy.get_all("List-Post") == ["<mailto:comite_directeur.comite@listes.example.fr>"]
    assert copy["X-Loop"] == "comite_directeur.comite@listes.example.fr"
    assert copy["Bcc"] is None
    assert str(copy["List-Id"]) == "Comité directeur – Provence <comite_directeur.comite.listes.example.fr>"


@pytest.mark.parametrize("field, value", [("name", "Board\r\nBcc: victim@example.org"),
                                          ("subject_prefix", "[CD]\nBcc: victim@example.org"),
                                          ("name", "Board\rX")])
def test_line_breaks_in_list_settings_are_refused(field: str, value: str) -> None:
    import dataclasses

    message = EmailMessage()
    message["From"] = "a@example.fr"
    message.set_content("hello\n")
    with pytest.raises(HeaderInjection):
        prepare(message.as_bytes(), dataclasses.replace(INFO, **{field: value}))


@pytest.mark.parametrize("name", CORPUS)
def test_wire_form_is_the_dot_stuffed_copy(name: str) -> None:
    from engine.outbound.smtp import dot_stuff

    prepared = prepare((POSTS / name).read_bytes(), INFO)
    dotty = Personal("https://listes.example.fr/u/" + "x" * 55 + "." + "y" * 30, "mailto:a@b.c", ".raison")
    for personal in (ALICE, BOB, dotty):
        assert prepared.copy(personal, stuffed=True) == dot_stuff(prepared.copy(personal))


def test_lines_starting_with_a_dot_survive_the_wire() -> None:
    from engine.outbound.smtp import dot_stuff

    message = EmailMessage()
    message["From"] = "a@example.fr"
    message.set_content(".\n..leading dots\n.end\n")
    prepared = prepare(message.as_bytes(), INFO)
    wire = prepared.copy(ALICE, stuffed=True)
    assert wire == dot_stuff(prepared.copy(ALICE)) and b"\r\n.\r\n" not in wire


def test_unlabelled_8bit_text_is_read_as_utf8_not_mangled() -> None:
    copy = parse(prepare((POSTS / "unlabelled-8bit.eml").read_bytes(), INFO).copy(ALICE))
    part = copy.get_body(("plain",))
    assert part.get_content_charset() == "utf-8"
    assert part.get_content().replace("\r\n", "\n").startswith("Bonjour à tous, départ à 8 h.\n")
