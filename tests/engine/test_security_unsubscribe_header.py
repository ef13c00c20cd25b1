"""Security review, issue 11, after the fixes: the List-Unsubscribe of an address shared by many members.

The token named every member sharing the copy; 150 members on one address made a List-Unsubscribe line of
more than 998 octets (RFC 5322 §2.1.1), an invalid copy that relays may refuse or cut. Past
``tokens.MAX_MEMBERS_NAMED`` the token names the address; tokens naming every member still work.
"""

from __future__ import annotations

import re
from email.message import EmailMessage

from engine import tokens
from engine.config import Settings
from engine.directory.models import Member, Role
from engine.lists.models import OptOut
from engine.posting.models import Message, MessageState
from tests import factories
from tests.engine.conftest import MARKER_SUBJECT, Federation, settle, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Received, Sink

TRIBE = "Tribu.Plongee@example.fr"
UNSUBSCRIBE = "comite_directeur.comite-unsubscribe@listes.example.fr"


def tribe(federation: Federation, count: int = 150) -> list[Member]:
    """``count`` board members on one address, with the ids of a federation of 100,000 members and more."""
    board_role = Role.get(Role.code == "membre_cd")
    people = []
    for n in range(count):
        person = factories.member("Membre", f"Tribu{n:03d}", email=TRIBE if n % 2 else TRIBE.lower(),
                                  club=federation.club, id=1_000_000 + n)
        factories.mandate(person, board_role, federation.region)
        people.append(person)
    return people


def copy_to(sink: Sink, address: str, subject: str) -> Received:
    [found] = [r for r in sink.handler.received
               if address.lower() in [a.lower() for a in r.rcpt_tos] and subject in str(r.message["Subject"])]
    return found


def header_links(message: EmailMessage) -> tuple[str, str]:
    value = str(message["List-Unsubscribe"])
    [https] = re.findall(r"<(https://[^>]+)>", value)
    [mailto] = re.findall(r"<(mailto:[^>]+)>", value)
    return https, mailto


def test_list_unsubscribe_of_150_members_sharing_an_address_stays_within_998_octets_and_works(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    tribe(federation)
    engine = start_engine()
    assert send(engine, post(subject="Pour la tribu")) == {}
    wait_until(lambda: Message.select().where(Message.state == MessageState.DONE).exists(), what="the post done")
    wait_until(lambda: len(sink.handler.received) == 3, what="three copies (two families and Élodie)")
    received = copy_to(sink, TRIBE, "Pour la tribu")
    lines = received.data.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998, [line[:60] for line in lines if len(line) > 998]
    head = received.data.split(b"\r\n\r\n", 1)[0]
    unfolded = re.sub(rb"\r\n[ \t]", b" ", head)
    assert b"List-Unsubscribe: <https://" in unfolded and b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in head
    https, mailto = header_links(received.message)
    token = https.rsplit("/u/", 1)[1]
    assert mailto.endswith(f"?subject={token}")
    assert tokens.load_unsubscribe_token(engine_settings, token).email_key == TRIBE.lower()
    assert "150" in received.message.get_body(("plain",)).get_content()  # the footer says who shares it
    # the mailto of the header, as a mail client sends it: the whole tribe leaves, the others stay
    leave = EmailMessage()
    leave["From"], leave["To"], leave["Subject"] = TRIBE, UNSUBSCRIBE, token
    leave.set_content("")
    assert send(engine, leave, sender=TRIBE, recipients=[UNSUBSCRIBE]) == {}
    wait_until(OptOut.select().where(OptOut.email_key == TRIBE.lower()).exists, what="the address's opt-out")
    settle(engine, federation, sink)
    marker_to = {a.lower() for r in sink.handler.received if MARKER_SUBJECT in str(r.message["Subject"])
                 for a in r.rcpt_tos}
    assert marker_to == {"elodie.dupre@example.fr", "famille.martin@example.fr"}


def test_a_family_of_a_few_is_still_named_member_by_member(start_engine, federation: Federation, sink: Sink,
                                                           engine_settings: Settings) -> None:
    """Tokens name the members (they survive address changes) while they are few."""
    engine = start_engine()
    assert send(engine, post(subject="Pour la famille")) == {}
    wait_until(lambda: len(sink.handler.received) == 2, what="two copies")
    https, _mailto = header_links(copy_to(sink, "famille.martin@example.fr", "Pour la famille").message)
    target = tokens.load_unsubscribe_token(engine_settings, https.rsplit("/u/", 1)[1])
    assert sorted(target.member_ids) == sorted(m.id for m in federation.board[1:]) and target.email_key is None


def test_an_old_token_naming_150_members_still_unsubscribes_them(start_engine, federation: Federation, sink: Sink,
                                                                 engine_settings: Settings) -> None:
    people = tribe(federation)
    old = tokens.make_unsubscribe_token(engine_settings, federation.board_list.id, [p.id for p in people])
    assert len(old) > 998 and tokens.load_unsubscribe_token(engine_settings, old).member_ids
    engine = start_engine()
    leave = EmailMessage()
    leave["From"], leave["To"], leave["Subject"] = TRIBE, UNSUBSCRIBE, old
    leave.set_content("")
    assert send(engine, leave, sender=TRIBE, recipients=[UNSUBSCRIBE]) == {}
    wait_until(lambda: OptOut.select().where(OptOut.member.in_([p.id for p in people])).count() == 150,
               what="150 opt-outs")


def test_the_longest_address_token_fits_a_header_line(engine_settings: Settings) -> None:
    """The worst case of the address form: a 254-octet address, list and domain parts at their limits."""
    from engine.posting.render import Personal, personal_headers

    address = ("a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".fr")[:254]
    token = tokens.make_unsubscribe_token(engine_settings, 2**31, list(range(10**9, 10**9 + 11)), email_key=address)
    local, domain = "l" * 64, ".".join(["d" * 63] * 3) + ".fr"
    lines = personal_headers(Personal(f"{engine_settings.base_url}/u/{token}",
                                      f"mailto:{local}-unsubscribe@{domain}?subject={token}", "x")).split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
