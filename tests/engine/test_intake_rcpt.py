"""RCPT at the engine's intake over real SMTP: a list answers only at its own domain, and a database that
fails while the recipient is checked gets a temporary 451 (the sender retries), never a 5xx or a 250."""

from __future__ import annotations

import smtplib

import pytest

from engine.posting.models import Message
from tests import factories
from tests.engine.conftest import Federation
from tests.engine.test_engine_e2e import post, send

BOARD = "comite_directeur.comite"


def rcpts(engine, *addresses: str) -> list[tuple[int, bytes]]:  # type: ignore[no-untyped-def]
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        client.ehlo("test")
        client.mail("someone@example.org")
        return [client.rcpt(address) for address in addresses]


def test_a_list_address_is_accepted_only_at_its_own_domain(start_engine, federation: Federation) -> None:
    other = factories.domain("listes.codep13.fr", structure=federation.region)
    engine = start_engine()
    codes = rcpts(engine, f"{BOARD}@listes.codep13.fr", f"{BOARD}-request@listes.codep13.fr",
                  f"{BOARD}-owner@listes.codep13.fr", f"{BOARD}@listes.example.fr", f"{BOARD.upper()}@LISTES.EXAMPLE.FR")
    assert [code for code, _ in codes] == [550, 550, 550, 250, 250]
    assert b"no such mailing list" in codes[0][1]
    # The same local part at the other domain is another list: posts go to that one.
    local = factories.mailing_list(BOARD, other, structure=federation.region, post_policy="anyone")
    assert [code for code, _ in rcpts(engine, f"{BOARD}@listes.codep13.fr")] == [250]
    send(engine, post(to=f"{BOARD}@listes.codep13.fr"))
    assert [m.mailing_list_id for m in Message.select()] == [local.id]


def test_a_database_error_while_checking_the_recipient_is_answered_451(start_engine, federation: Federation,
                                                                       db) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine()
    assert rcpts(engine, f"{BOARD}@listes.example.fr")[0][0] == 250
    db.execute_sql("ALTER TABLE mailing_list RENAME TO mailing_list_away")  # the engine's next query fails
    try:
        [(code, text)] = rcpts(engine, f"{BOARD}@listes.example.fr")
        assert (code, text) == (451, b"4.3.0 Temporary failure, try again later")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(engine, post())
        assert refused.value.recipients[f"{BOARD}@listes.example.fr"][0] == 451
    finally:
        db.execute_sql("ALTER TABLE mailing_list_away RENAME TO mailing_list")
    assert Message.select().count() == 0
    assert rcpts(engine, f"{BOARD}@listes.example.fr")[0][0] == 250  # the same engine, once the database is back
    assert send(engine, post()) == {} and Message.select().count() == 1


def test_a_post_costs_the_database_thread_one_call_at_rcpt_and_one_at_data(start_engine, federation: Federation,
                                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from engine import runtime
    from engine.intake import service

    engine = start_engine()
    calls: list[str] = []
    original = runtime.Engine._call

    def counting(self, function, args, kwargs):  # type: ignore[no-untyped-def]
        if getattr(function, "__module__", "") == service.__name__:
            calls.append(function.__name__)
        elif function.__name__ == "_in_transaction":  # the posts stored in one transaction (group commit)
            calls.append("+".join(work.function.__name__ for work in args[0]))
        return original(self, function, args, kwargs)

    monkeypatch.setattr(runtime.Engine, "_call", counting)
    assert send(engine, post()) == {}
    assert calls == ["rcpt", "store_post"]  # the render check's list settings came with the route
    assert Message.select().count() == 1


ADDRESSES = ["<a@b.fr>", "<a@b.fr> SIZE=10", "<a@b.fr>  (comment) SIZE=1", "<a.b+c@x-y.fr>BODY=8BITMIME", "<A@B.FR> ",
             "<a@b.fr>\t x", "<a..b@c.fr>", "<.a@b.fr>", "<a.@b.fr>", '<"a b"@c.fr>', "<a@[127.0.0.1]>", "<a@b..fr>",
             "a@b.fr", " <a@b.fr>", "<a@b.fr", "<@relay.fr:a@b.fr>", "<élodie@exemple.fr>", "<a@b.fr> SIZE=1 ",
             "<a@b.fr>>", "<a(c)@b.fr>", "<a@b.fr>\r\n", "<" + "x" * 70 + "@b.fr>", "<>", "<a@b.fr> \"q\""]


@pytest.mark.parametrize("limit", [0, 64])
def test_a_plain_address_is_read_as_the_full_parser_reads_it(limit: int) -> None:
    from aiosmtpd.smtp import SMTP

    from engine.intake.server import IntakeSMTP

    ours, theirs = IntakeSMTP.__new__(IntakeSMTP), SMTP.__new__(SMTP)
    ours.local_part_limit = theirs.local_part_limit = limit
    for address in ADDRESSES:
        assert ours._getaddr(address) == theirs._getaddr(address), address
