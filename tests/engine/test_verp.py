"""VERP return paths (engine/bounces/verp.py): at most 64 octets of local part whatever the list's address and the
delivery id (RFC 5321 §4.5.3.1.1), signed, case-insensitive; the shared ``bounces+TOKEN@`` form of long list
addresses through the real intake and the bounce pipeline."""

from __future__ import annotations

import smtplib

import pytest

from engine.bounces import verp
from engine.bounces.models import Bounce
from engine.config import Settings
from engine.intake import routes
from engine.outbound.models import Delivery
from engine.posting.models import Message, MessageState
from tests import factories
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_bounces_pipeline import CORPUS, PLACEHOLDER
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink

KEY = b"k" * 32
LONGEST_LIST = "a" * 63 + "z"  # the longest local part a list may have (engine/lists/admin.py)


@pytest.mark.parametrize("local_part", ["cd", "comite_directeur.comite", "a" * 35, "a" * 40, LONGEST_LIST])
@pytest.mark.parametrize("delivery_id", [1, 99_999, 2**31 - 1, 2**63 - 1])
def test_the_local_part_never_passes_64_octets(local_part: str, delivery_id: int) -> None:
    address = verp.return_path(local_part, "listes.example.fr", verp.make_token(KEY, delivery_id))
    local, _, domain = address.partition("@")
    assert len(local.encode()) <= 64 and domain == "listes.example.fr"
    assert local == local.lower()  # some MTAs lowercase local parts
    assert verp.read_token(KEY, local.partition("+")[2]) == delivery_id
    if len(f"{local_part}-bounces+".encode()) + len(verp.make_token(KEY, delivery_id)) <= 64:
        assert local.startswith(f"{local_part}-bounces+")  # the list's own, when it fits
    else:
        assert local.startswith("bounces+")


def test_tokens_are_signed_and_case_insensitive() -> None:
    token = verp.make_token(KEY, 12345)
    assert verp.read_token(KEY, token.upper()) == 12345
    assert verp.read_token(b"another key" * 3, token) is None
    for i, char in enumerate(token):
        flipped = token[:i] + ("0" if char != "0" else "1") + token[i + 1:]
        if flipped != token and char != ".":
            assert verp.read_token(KEY, flipped) != 12345 or flipped.lower() == token
    for bad in ("", ".", "abc", "3039.", ".0123456789", "zz.0123456789", "1" * 17 + ".0123456789", token + "0",
                "3039.012345678g", "-1.0123456789"):
        assert verp.read_token(KEY, bad) is None, bad


def test_the_shared_form_routes_to_the_deliverys_list(federation: Federation) -> None:
    ml = factories.mailing_list(LONGEST_LIST, federation.domain, structure=federation.region)
    message = Message.create(mailing_list=ml, content=b"x", size=1, state=MessageState.DONE, received_at=ml.created_at)
    copy = Delivery.create(message=message, address="x@example.org", next_attempt_at=ml.created_at,
                           updated_at=ml.created_at)
    address = verp.return_path(ml.local_part, "listes.example.fr", verp.make_token(KEY, copy.id))
    found = routes.route(address.upper(), KEY)
    assert (found.list_id, found.companion, found.delivery_id) == (ml.id, routes.Companion.BOUNCES, copy.id)
    with pytest.raises(routes.Refused, match="550 5.1.1"):
        routes.route(f"bounces+{verp.make_token(b'forged' * 6, copy.id)}@listes.example.fr", KEY)
    with pytest.raises(routes.Refused, match="550 5.1.1"):  # a genuine token of a delivery that does not exist
        routes.route(f"bounces+{verp.make_token(KEY, copy.id + 1000)}@listes.example.fr", KEY)
    other = factories.domain("autre.example.fr", structure=federation.region)
    with pytest.raises(routes.Refused, match="550 5.1.1"):  # another domain's delivery
        routes.route(address.replace("listes.example.fr", other.name), KEY)
    with pytest.raises(routes.Refused, match="550 5.1.1"):  # "bounces" without a token is no address of ours
        routes.route("bounces@listes.example.fr", KEY)


def test_a_long_list_address_gets_its_bounces_through_the_shared_form(start_engine, federation: Federation,
                                                                     sink: Sink, engine_settings: Settings) -> None:
    long = factories.mailing_list("commission.technique.regionale.provence-alpes-cote-d-azur.corse",
                                  federation.domain, structure=federation.region, post_policy="anyone")
    factories.criterion(long, federation.region, [factories.role("membre_cd")])
    engine = start_engine()
    send(engine, post(to=long.address))
    wait_until(lambda: len(sink.handler.received) == 2, what="two copies")
    [copy] = [r for r in sink.handler.received if "elodie.dupre@example.fr" in r.rcpt_tos]
    local = copy.mail_from.partition("@")[0]
    assert local.startswith("bounces+") and len(local.encode()) <= 64
    data = (CORPUS / "postfix-5.1.1-orange.eml").read_bytes().replace(PLACEHOLDER, copy.mail_from.encode())
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port, timeout=10) as client:
        assert client.sendmail("", [copy.mail_from], data.replace(b"\n", b"\r\n")) == {}
    assert Bounce.get(Bounce.email_key == "elodie.dupre@example.fr").score == 1.0


@pytest.mark.parametrize("delivery_id", [0, 1, 255, 99_999, 2**63 - 1])
def test_the_token_is_the_documented_hmac(delivery_id: int) -> None:
    """``<id in hex>.<10 hex digits of HMAC-SHA256(key, salt + decimal id)>``: what bounces already in flight carry."""
    import hashlib
    import hmac

    mac = hmac.new(KEY, b"palanquee.verp:" + str(delivery_id).encode(), hashlib.sha256).hexdigest()[:10]
    assert verp.make_token(KEY, delivery_id) == f"{delivery_id:x}.{mac}"
    assert verp.read_token(KEY, f"{delivery_id:x}.{mac}") == delivery_id
