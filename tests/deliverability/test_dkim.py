"""DKIM signing of every copy (RFC 6376, RFC 8058 §4, RFC 8301, RFC 8463), verified with dkimpy after real SMTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import types
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from engine import resolver
from engine.config import Settings
from engine.posting import keys
from engine.posting.dkim import BodyHash, canonical_field, canonical_fields, canonical_lines, finish_body, split_fields
from engine.posting.render import ListInfo, Personal, prepare
from engine.posting.signing import CopySigner
from tests.deliverability.conftest import invoke, published, verifies
from tests.deliverability.helpers import as_bytes, make_post, send_raw
from tests.engine.conftest import Federation, wait_until
from tests.support.sink import Sink

REQUIRED = {"from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe", "list-unsubscribe-post"}
# RFC 6376 §5.4.2 / §8.15: the fields a receiver shows or acts on, each named once more than it occurs so that
# one added after signing (a second Date, a Cc) breaks the signature. Written out here, not imported from
# engine.posting.dkim.OVERSIGNED, so that a name dropped there fails this test.
OVERSIGNED = ("from", "to", "cc", "subject", "date", "message-id", "reply-to", "sender", "mime-version",
              "content-type", "content-transfer-encoding", "list-id", "list-unsubscribe", "list-unsubscribe-post",
              "list-post", "list-help", "list-owner")
POSTS = Path(__file__).resolve().parents[1] / "data" / "posts"


def signature_tags(data: bytes, name: bytes = b"DKIM-Signature") -> list[dict[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    found = re.findall(rf"^{name.decode()}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M | re.I)
    return [{k.strip(): "".join(v.split()) for k, _, v in (p.partition("=") for p in f.split(";")) if k.strip()}
            for f in found]


def delivered(start_engine, sink: Sink, settings: Settings, count: int = 2, data: bytes | None = None) -> list:  # type: ignore[no-untyped-def,type-arg]
    engine = start_engine(settings)
    send_raw(engine, data or as_bytes(make_post()), "elodie.dupre@example.fr")
    wait_until(lambda: len(sink.handler.received) == count, what=f"{count} copies")
    return list(sink.handler.received)


def test_every_copy_verifies_with_the_published_key(start_engine, federation: Federation, sink: Sink,
                                                    engine_settings: Settings, list_key: keys.DkimKey) -> None:
    copies = delivered(start_engine, sink, engine_settings)
    assert len({copy.data for copy in copies}) == 2  # personal copies, one signature each
    for copy in copies:
        assert verifies(copy.data)
        [tags] = signature_tags(copy.data)
        assert tags["a"] == "rsa-sha256" and tags["c"] == "relaxed/relaxed" and "l" not in tags
        assert tags["d"] == "listes.example.fr" and tags["s"] == list_key.selector
        signed = tags["h"].lower().split(":")
        assert set(signed) >= REQUIRED
        # Over-signed (RFC 6376 §5.4.2): each named once more than it occurs, an absent one (Sender) once.
        for name in OVERSIGNED:
            assert signed.count(name) == len(copy.message.get_all(name, [])) + 1, name
        # d= aligns with the rewritten From (DMARC, RFC 7489 §3.1.1).
        assert copy.message["From"].addresses[0].domain == tags["d"]
    public = keys.load_private_key(list_key.private_key)
    assert isinstance(public, rsa.RSAPrivateKey) and public.key_size == 2048


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda d: d.replace(b"\r\nSubject:", b"\r\nSubject: [pub] Gagnez !\r\nSubject:", 1), id="second-subject"),
    pytest.param(lambda d: d.replace(b"\r\n\r\n", b"\r\nReply-To: escroc@evil.example\r\n\r\n", 1), id="added-reply-to"),
    pytest.param(lambda d: re.sub(rb"(?m)^(Date:[^\r]*\r\n)", rb"Date: Tue, 01 Dec 2026 08:00:00 +0100\r\n\1", d, count=1),
                 id="second-date"),
    pytest.param(lambda d: d.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe-Post: x\r\n\r\n", 1), id="second-one-click"),
    pytest.param(lambda d: d.replace(b"https://listes.example.fr/u/", b"https://evil.example/u/", 1), id="unsubscribe-url"),
    pytest.param(lambda d: d.replace(b"rendez-vous samedi", b"rendez-vous dimanche", 1), id="body"),
])
def test_a_header_added_after_signing_breaks_verification(start_engine, federation: Federation, sink: Sink,
                                                          engine_settings: Settings, list_key: keys.DkimKey,
                                                          tamper) -> None:  # type: ignore[no-untyped-def]
    copy = delivered(start_engine, sink, engine_settings)[0]
    assert verifies(copy.data)
    changed = tamper(copy.data)
    assert changed != copy.data
    assert not verifies(changed)


def test_an_ed25519_key_adds_a_second_signature(start_engine, federation: Federation, sink: Sink, dns,  # type: ignore[no-untyped-def]
                                                engine_settings: Settings, list_key: keys.DkimKey,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    second = published(dns, keys.generate("listes.example.fr", algorithm=keys.Algorithm.ED25519))
    copy = delivered(start_engine, sink, engine_settings)[0]
    rsa_tags, ed_tags = signature_tags(copy.data)[1], signature_tags(copy.data)[0]
    assert rsa_tags["a"] == "rsa-sha256" and ed_tags["a"] == "ed25519-sha256" and ed_tags["s"] == second.selector
    # dkimpy verifies ed25519 through PyNaCl, which the lock does not have: a shim on cryptography stands in.
    monkeypatch.setattr(dkim, "nacl", _nacl_shim(), raising=False)
    positions = {tags["a"]: index for index, tags in enumerate(signature_tags(copy.data))}
    assert verifies(copy.data, positions["ed25519-sha256"])
    assert verifies(copy.data, positions["rsa-sha256"])
    assert not verifies(copy.data.replace(b"rendez-vous", b"rendez-vouz", 1), positions["ed25519-sha256"])


def _nacl_shim() -> types.SimpleNamespace:
    """The three names of PyNaCl dkimpy uses to verify ed25519, on cryptography's Ed25519 (test-only)."""
    import base64

    from cryptography.exceptions import InvalidSignature

    class BadSignatureError(Exception):
        pass

    class VerifyKey:
        def __init__(self, encoded: bytes, encoder: object = None) -> None:
            self.key = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded))

        def verify(self, message: bytes, signature: bytes) -> bytes:
            try:
                self.key.verify(signature, message)
            except InvalidSignature as exc:
                raise BadSignatureError() from exc
            return message

    return types.SimpleNamespace(
        signing=types.SimpleNamespace(VerifyKey=VerifyKey), encoding=types.SimpleNamespace(Base64Encoder=None),
        exceptions=types.SimpleNamespace(BadSignatureError=BadSignatureError, ValueError=ValueError))


def test_signing_can_be_left_to_the_smarthost(start_engine, federation: Federation, sink: Sink,
                                              engine_settings: Settings, list_key: keys.DkimKey) -> None:
    copies = delivered(start_engine, sink, dataclasses.replace(engine_settings, dkim_signing="smarthost"))
    assert all(b"\r\nDKIM-Signature:" not in b"\r\n" + copy.data.split(b"\r\n\r\n")[0] for copy in copies)


def test_a_domain_without_key_sends_unsigned_copies(start_engine, federation: Federation, sink: Sink,
                                                    engine_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    copies = delivered(start_engine, sink, engine_settings)
    assert not any(signature_tags(copy.data) for copy in copies)
    assert "palanquee dkim generate listes.example.fr" in caplog.text


def test_the_inbound_signature_is_removed_and_ours_is_the_only_one(start_engine, federation: Federation, sink: Sink,
                                                                   engine_settings: Settings, list_key: keys.DkimKey,
                                                                   author_domain) -> None:  # type: ignore[no-untyped-def]
    signed = author_domain("example.fr").sign(as_bytes(make_post()))
    copy = delivered(start_engine, sink, engine_settings, data=signed)[0]
    assert [tags["d"] for tags in signature_tags(copy.data)] == ["listes.example.fr"]
    assert verifies(copy.data)


@pytest.mark.parametrize("path", sorted(POSTS.glob("*.eml")), ids=lambda p: p.name)
def test_the_incremental_body_hash_equals_the_whole_body_hash(path: Path) -> None:
    """Per copy only the footers are canonicalised; it must equal canonicalising the whole body."""
    info = ListInfo(list_id=1, name="Comité directeur", local_part="cd", domain="listes.example.fr")
    try:
        prepared = prepare(path.read_bytes(), info)
    except Exception:  # noqa: BLE001 (a post the renderer refuses is not this test's subject)
        pytest.skip("not renderable")
    signer = CopySigner(prepared, [])
    for n in range(3):
        pieces = prepared.pieces(Personal(f"https://listes.example.fr/u/T{n}  ", f"mailto:x{n}", "membre  \t", n + 1))
        whole = prepared.join(pieces).split(b"\r\n\r\n", 1)[1]
        import base64
        import hashlib

        expected = base64.b64encode(hashlib.sha256(finish_body(canonical_lines(whole))).digest())
        assert signer.body.of(pieces[1:]) == expected
        assert BodyHash([whole]).of([]) == expected


def test_dkim_generate_prints_the_record_to_publish(cli_env: dict[str, str], dns) -> None:  # type: ignore[no-untyped-def]
    from engine.commands import ENGINE_COMMANDS

    group = next(command for command in ENGINE_COMMANDS if command.name == "dkim")
    env = cli_env
    result = invoke(group, ["generate", "Listes.Example.FR", "--selector", "s2026"], env)
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("s2026._domainkey.listes.example.fr. IN TXT (")
    record = "".join(re.findall(r'"([^"]*)"', line))
    assert all(len(part) <= 255 for part in re.findall(r'"([^"]*)"', line))
    key = keys.DkimKey.get(keys.DkimKey.selector == "s2026")
    assert record == key.txt_record() and record.startswith("v=DKIM1; k=rsa; p=")
    dns.add(key.dns_name(), "TXT", record)
    assert resolver.dkim_dnsfunc(key.dns_name()) == record.encode()
    again = invoke(group, ["generate", "listes.example.fr", "--selector", "s2026"], env)
    assert again.exit_code == 1 and "already exists" in again.output
    bad = invoke(group, ["generate", "listes.example.fr", "--selector", "a;b"], env)
    assert bad.exit_code == 1 and "selector" in bad.output


def test_a_key_can_be_published_before_it_signs(cli_env: dict[str, str], list_key: keys.DkimKey) -> None:
    from engine.commands import ENGINE_COMMANDS

    group = next(command for command in ENGINE_COMMANDS if command.name == "dkim")
    result = invoke(group, ["generate", "listes.example.fr", "--selector", "next", "--inactive"], cli_env)
    assert result.exit_code == 0 and "palanquee dkim activate listes.example.fr next" in result.output
    assert [k.selector for k in keys.signing_keys("listes.example.fr")] == [list_key.selector]
    assert invoke(group, ["activate", "listes.example.fr", "next"], cli_env).exit_code == 0
    assert [k.selector for k in keys.signing_keys("listes.example.fr")] == ["next"]
    assert invoke(group, ["activate", "listes.example.fr", "nope"], cli_env).exit_code == 1
    shown = invoke(group, ["show", "listes.example.fr"], cli_env).output.splitlines()
    assert shown[0].startswith("retired ") and shown[1].startswith("active  next._domainkey.")


@pytest.mark.parametrize("path", sorted(POSTS.glob("*.eml")), ids=lambda p: p.name)
def test_every_post_of_the_corpus_signs_verifiably(path: Path, dns) -> None:  # type: ignore[no-untyped-def]
    """8-bit headers, S/MIME wrapped whole, base64 HTML, iso-2022-jp…: dkimpy agrees with our canonical forms."""
    from engine.posting.dkim import Signature

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dns.add("corpus._domainkey.listes.example.fr", "TXT", keys.txt_record(keys.Algorithm.RSA, key))
    info = ListInfo(list_id=1, name="Comité directeur", local_part="cd", domain="listes.example.fr",
                    rewrite_from=True)
    signer = CopySigner(prepare(path.read_bytes(), info),
                        [Signature(keys.SigningKey("listes.example.fr", "corpus", keys.Algorithm.RSA, key))])
    for n in range(2):
        copy = signer.copy(Personal(f"https://listes.example.fr/u/T{n}", f"mailto:x{n}", "membre"))
        assert verifies(copy), path.name
        assert signer.copy(Personal(f"https://listes.example.fr/u/T{n}", f"mailto:x{n}", "membre"),
                           stuffed=True).replace(b"\r\n..", b"\r\n.") .startswith(copy[:200])


WHITESPACE = [b"plain line\r\n", b"a \t b  c\r\n", b"tab\tonly\r\n", b"trailing \r\n", b"trailing tab\t\r\n",
              b"two  spaces\r\n\r\n", b"  leading\r\n", b"=20 encoded\r\n", b"\t\r\n \r\n", b""]


@pytest.mark.parametrize("data", WHITESPACE)
def test_relaxed_canonical_forms_match_dkimpy_whatever_the_whitespace(data: bytes) -> None:
    """The fast paths (no regex when a C scan finds nothing to change) give dkimpy's relaxed forms."""
    from dkim.canonicalization import Relaxed

    assert finish_body(canonical_lines(data)) == Relaxed.canonicalize_body(data)
    field = b"Subject:" + data.rstrip(b"\r\n").replace(b"\r\n", b"\r\n ") + b"\r\n"  # folded lines
    [(name, value)] = Relaxed.canonicalize_headers([tuple(field.rstrip(b"\r\n").split(b":", 1))])
    assert canonical_field(field) == (name, name + b":" + value)
    block = field + b"X-Other :" + data.rstrip(b"\r\n") + b"\r\n"  # a copy's personal fields, two of them
    assert canonical_fields(block) == [canonical_field(part) for part in split_fields(block)]
    assert canonical_fields(block)[0] == (name, name + b":" + value)


def test_a_personal_piece_off_a_line_boundary_hashes_the_whole_body() -> None:
    """A piece that does not end a line cannot be canonicalised alone: the whole body is, as dkimpy does."""
    from dkim.canonicalization import Relaxed

    body = BodyHash([b"first  line\r\n", b" \tend\r\n\r\n"])
    for piece in (b"no end  ", b"", b"ends\r\n"):
        whole = b"first  line\r\n" + piece + b" \tend\r\n\r\n"
        expected = base64.b64encode(hashlib.sha256(Relaxed.canonicalize_body(whole)).digest())
        assert body.of([piece]) == expected, piece


def test_a_signing_key_is_loaded_once_and_a_rotated_one_at_once(list_key: keys.DkimKey) -> None:
    [first] = keys.signing_keys("listes.example.fr")
    [again] = keys.signing_keys("listes.example.fr")  # a message later: the same key object, not loaded again
    assert again.key is first.key
    rotated = keys.generate("listes.example.fr", selector="next")
    keys.activate("listes.example.fr", "next")
    [now] = keys.signing_keys("listes.example.fr")  # another text: loaded anew, used at once
    assert (now.selector, now.key is first.key) == ("next", False)
    assert keys.public_key_base64(now.key) == keys.public_key_base64(keys.load_private_key(rotated.private_key))
    with pytest.raises(ValueError):
        keys.load_private_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
