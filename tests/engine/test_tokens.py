"""Signed tokens: one purpose each, expiry enforced, tampering and foreign keys refused."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from itsdangerous import URLSafeSerializer

from engine import tokens


def test_unsubscribe_token_names_list_and_members_not_the_address(settings):
    token = tokens.make_unsubscribe_token(settings, 7, member_ids=(42, 3))
    assert "@" not in token
    assert tokens.load_unsubscribe_token(settings, token) == tokens.UnsubscribeTarget(7, (3, 42), None)
    bare = tokens.make_unsubscribe_token(settings, 7, email_key="guest@club.fr")
    assert tokens.load_unsubscribe_token(settings, bare) == tokens.UnsubscribeTarget(7, (), "guest@club.fr")
    assert tokens.unsubscribe_url(settings, 7, (42,)).startswith("https://listes.example.fr/u/")


def test_tampered_or_foreign_tokens_are_refused(settings):
    token = tokens.make_unsubscribe_token(settings, 7, member_ids=(42,))
    with pytest.raises(tokens.BadToken):
        tokens.load_unsubscribe_token(settings, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    other = dataclasses.replace(settings, secret_key="another-secret-key-entirely")
    with pytest.raises(tokens.BadToken):
        tokens.load_unsubscribe_token(other, token)
    # a well-signed token of another purpose does not load as an unsubscribe token
    forged = URLSafeSerializer(settings.secret_key, salt=tokens.Purpose.EMAIL_CONFIRM).dumps([7, [42]])
    with pytest.raises(tokens.BadToken):
        tokens.load_unsubscribe_token(settings, forged)
    # a genuine signature over a malformed payload is refused too
    odd = URLSafeSerializer(settings.secret_key, salt=tokens.Purpose.UNSUBSCRIBE).dumps(["7", "nobody"])
    with pytest.raises(tokens.BadToken):
        tokens.load_unsubscribe_token(settings, odd)


def test_timed_tokens_expire_and_keep_to_their_purpose(settings, monkeypatch):
    token = tokens.dumps(settings, tokens.Purpose.PASSWORD_RESET, {"m": 1})
    assert tokens.loads(settings, tokens.Purpose.PASSWORD_RESET, token, timedelta(hours=2)) == {"m": 1}
    with pytest.raises(tokens.BadToken):
        tokens.loads(settings, tokens.Purpose.EMAIL_CONFIRM, token, timedelta(hours=2))
    from engine import clock

    with clock.frozen(clock.now() + timedelta(hours=2, seconds=1)), pytest.raises(tokens.ExpiredToken):
        tokens.loads(settings, tokens.Purpose.PASSWORD_RESET, token, timedelta(hours=2))


def test_fast_unsubscribe_tokens_are_plain_itsdangerous_tokens(settings):
    from itsdangerous import URLSafeSerializer

    standard = URLSafeSerializer(settings.secret_key, salt=tokens.Purpose.UNSUBSCRIBE)
    fast = tokens.make_unsubscribe_token(settings, 12, [5, 3])
    assert standard.loads(fast) == [12, [3, 5]]
    assert tokens.load_unsubscribe_token(settings, standard.dumps([12, "a@example.org"])).email_key == "a@example.org"
    assert fast == tokens.make_unsubscribe_token(settings, 12, [3, 5])  # deterministic: same copy, same link


class _Refused(tokens.LinkError):
    pass


@pytest.mark.parametrize("payload", [[1, 2], {"m": "1", "v": 1}, {"m": 1}, {"m": True, "v": 1}, "m", None])
def test_a_mailed_link_with_a_genuine_signature_over_a_malformed_payload_is_invalid(settings, payload):
    token = tokens.dumps(settings, tokens.Purpose.PASSWORD_RESET, payload)
    with pytest.raises(_Refused) as refused:
        tokens.load_link(settings, tokens.Purpose.PASSWORD_RESET, token, timedelta(hours=2), _Refused, ints=("m", "v"))
    assert refused.value.reason == "invalid"


def test_a_mailed_link_says_expired_tampered_or_foreign(settings):
    from engine import clock

    token = tokens.dumps(settings, tokens.Purpose.BOUNCE_PROBE, {"m": 4})
    assert tokens.load_link(settings, tokens.Purpose.BOUNCE_PROBE, token, timedelta(days=1), _Refused,
                            ints=("m",)) == {"m": 4}
    with clock.frozen(clock.now() + timedelta(days=1, seconds=1)), pytest.raises(_Refused) as late:
        tokens.load_link(settings, tokens.Purpose.BOUNCE_PROBE, token, timedelta(days=1), _Refused, ints=("m",))
    assert late.value.reason == "expired"
    for bad, purpose in ((token[:-3] + "xyz", tokens.Purpose.BOUNCE_PROBE), (token, tokens.Purpose.EMAIL_CONFIRM)):
        with pytest.raises(_Refused) as refused:
            tokens.load_link(settings, purpose, bad, timedelta(days=1), _Refused, ints=("m",))
        assert refused.value.reason == "invalid"


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", b"[12,[3,5]]", bytes(range(256)), b"\xff\xfe\xfd" * 7,
                                  b"\x00" * 64, "é€".encode() * 50])
def test_the_hot_paths_base64_is_itsdangerous_own(data: bytes) -> None:
    """Every length modulo 3 (padding stripped), both URL-safe substitutes (``-`` and ``_``), binary."""
    from itsdangerous.encoding import base64_encode

    assert tokens.url_base64(data) == base64_encode(data)


def test_the_copied_hmac_gives_the_standard_librarys_digest_and_falls_back_without_openssls_object(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    import hmac

    for message in (b"", b"x", b"palanquee" * 50):
        mac = tokens.c_hmac(b"key", hashlib.sha1, b"salt:")
        first = mac.copy()
        first.update(message)
        assert first.digest() == hmac.new(b"key", b"salt:" + message, hashlib.sha1).digest()
        again = mac.copy()  # the keyed base is untouched by a copy's update
        again.update(message)
        assert again.digest() == first.digest()
    monkeypatch.setattr(hmac.HMAC, "_init_hmac", hmac.HMAC._init_old)  # a Python without OpenSSL's HMAC
    fallback = tokens.c_hmac(b"key", hashlib.sha1)
    assert isinstance(fallback, hmac.HMAC)
    fallback.update(b"x")
    assert fallback.digest() == hmac.new(b"key", b"x", hashlib.sha1).digest()
