"""Security review, issue 11, finding 11's sibling: the notices the engine mails a post's author about that
post (held for moderation, waiting for confirmation, rejected, failed) go to the From address, which anyone
can forge. They are limited per author address (``notices.AUTHOR_NOTICES_PER_DAY``, case variants of one
address counted as one mailbox) and per list (``notices.AUTHOR_NOTICES_PER_LIST_PER_DAY``), in one daily
counter shared by every kind of notice (``notices.within_author_limits``). Forged posts over SMTP to a
running engine, whose notices land in the recording smarthost.

The engine sends a held post's notices before it answers DATA (``engine/intake/service.py``): once the
client has its 250, every notice that post will ever cause has reached the sink, so counting them then is
not a check made too early. Each test also counts the moderators' requests, one per post, to prove that
notices were going out all along."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage

import pytest

from engine import clock, notices
from engine.config import Settings
from engine.posting import moderation
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation
from tests.support.sink import Received, Sink

LIST = "comite_directeur.comite@listes.example.fr"
MODERATOR = "webmaster@example.fr"  # PALANQUEE_ADMIN_EMAIL of the engine fixtures: the list has no moderator
ATTACKER = "attacker@evil.example"  # the envelope sender of every forged post
VICTIM = "victim@example.org"
VARIANTS = ("Victim@Example.org", "victim@example.org", "VICTIM@EXAMPLE.ORG", "vIcTiM@example.ORG")
# After the real date (nothing falls due when the clock is given back) and before the licences end.
T0 = datetime(2027, 6, 1, 8, 0)


@pytest.fixture
def frozen() -> Iterator[object]:
    with clock.frozen(T0) as advance:
        yield advance


def forged(author: str, number: int) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = author, LIST, f"Offre exceptionnelle n° {number}"
    message.set_content("Cliquez ici.\n")
    return message


def post_all(engine, authors: list[str], start: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Each author's forged post, one transaction each on one connection; every one answered 250 (held)."""
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        for number, author in enumerate(authors, start):
            assert client.send_message(forged(author, number), from_addr=ATTACKER, to_addrs=[LIST]) == {}


def to(sink: Sink, address: str) -> list[Received]:
    return [r for r in sink.handler.received if [a.lower() for a in r.rcpt_tos] == [address.lower()]]


def to_authors(sink: Sink) -> list[Received]:
    return [r for r in sink.handler.received if r.rcpt_tos != [MODERATOR]]


def test_finding_11_a_forged_author_hears_of_its_posts_ten_times_a_day_whatever_the_case(
        frozen, start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    engine = start_engine()
    limit = 10  # notices.AUTHOR_NOTICES_PER_DAY as documented (read from the code, a break of it would pass)
    posts = limit + 6
    post_all(engine, [VARIANTS[n % len(VARIANTS)] for n in range(posts)])  # each variant more than twice
    assert Message.select().where(Message.state == MessageState.HELD).count() == posts
    assert len(to(sink, MODERATOR)) == posts  # every post was handled, its notices sent
    assert len(to(sink, VICTIM)) == limit, "one mailbox, whatever the case of its address"
    assert len(to_authors(sink)) == limit
    # A rejection notice counts in the same daily counter: the victim hears nothing more today.
    moderation.reject(engine_settings, Message.select().order_by(Message.id).first(), None, "publicité")
    assert len(to(sink, VICTIM)) == limit
    # A day later the address may be told again.
    frozen(timedelta(days=1, minutes=1))  # type: ignore[operator]
    post_all(engine, ["VICTIM@example.org"], start=posts)
    assert len(to(sink, MODERATOR)) == posts + 1
    assert len(to(sink, VICTIM)) == limit + 1


def test_finding_11_forged_authors_of_one_list_hear_at_most_the_list_limit_a_day(
        start_engine, federation: Federation, sink: Sink, monkeypatch: pytest.MonkeyPatch) -> None:
    # The list's limit (100 in production) lowered to keep the test short: the counter is the same.
    assert notices.AUTHOR_NOTICES_PER_LIST_PER_DAY == 100
    limit = 13
    monkeypatch.setattr(notices, "AUTHOR_NOTICES_PER_LIST_PER_DAY", limit)
    engine = start_engine()
    posts = limit + 5
    post_all(engine, [f"victim{n}@example.org" for n in range(posts)])  # each address once: under its own limit
    assert len(to(sink, MODERATOR)) == posts
    authors = to_authors(sink)
    assert len(authors) == limit
    assert [r.rcpt_tos[0] for r in authors] == [f"victim{n}@example.org" for n in range(limit)]
