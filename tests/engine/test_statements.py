"""Statements of fixed shape compiled once (engine/statements.py): the same rows and rows written as peewee's
own queries, on SQLite and PostgreSQL, whatever the values (quotes, case, NUL-free hostile text)."""

from __future__ import annotations

import peewee as pw

from engine import clock, statements
from engine.db import database
from engine.intake import routes
from engine.lists.models import Domain, MailingList
from engine.posting.models import Message, MessageState
from tests import factories as f


def test_a_compiled_select_finds_what_peewee_finds_and_is_built_once(db) -> None:  # type: ignore[no-untyped-def]
    fed = f.federation_tree()
    first = f.mailing_list("bureau", fed["dom"])
    f.mailing_list("o'brien", fed["dom"])
    built: list[object] = []

    def build(domain: str, *locals_: str) -> pw.ModelSelect[MailingList]:
        built.append(domain)
        return MailingList.select(MailingList, Domain).join(Domain).where(
            (Domain.name == domain) & pw.fn.LOWER(MailingList.local_part).in_(list(locals_)))

    select = statements.Select(build, Domain.name, None, None)
    for _ in range(3):
        found = select(fed["dom"].name, "bureau", "o'brien")
        assert sorted(ml.local_part for ml in found) == ["bureau", "o'brien"]
        assert found[0].domain.name == fed["dom"].name  # the joined model, as peewee attaches it
    peewee_built = {ml.id: ml for ml in build(fed["dom"].name, "bureau", "o'brien")}
    for ours in select(fed["dom"].name, "bureau", "o'brien"):  # every field read as peewee reads it
        theirs = peewee_built[ours.id]
        assert ours.__data__ == theirs.__data__ and ours.domain.__data__ == theirs.domain.__data__
        assert not ours._dirty and not ours.domain._dirty and ours.domain_id == theirs.domain.id
    assert select("nowhere.example", "bureau", "x' OR '1'='1") == []
    assert len(built) == 2  # compiled once, with probes (and once above by peewee); never built again
    assert routes.find(f"BUREAU@{fed['dom'].name.upper()}", b"k" * 32)[1] == first


def test_insert_writes_the_row_model_create_writes(db) -> None:  # type: ignore[no-untyped-def]
    fed = f.federation_tree()
    ml = f.mailing_list("bureau", fed["dom"])
    values = dict(mailing_list=ml, message_id=None, author="a@b.fr", subject="Sujet d'été \u2019", content=b"\x00\xffraw",
                  size=5, state=MessageState.ACCEPTED, received_at=clock.now())
    compiled_id = statements.insert(Message, **values)
    created = Message.create(**values)
    assert compiled_id != created.id
    columns = [field.name for field in Message._meta.sorted_fields if field.name != "id"]
    rows = {m.id: [getattr(m, name) for name in columns] for m in Message.select()}
    rows = {key: [bytes(v) if isinstance(v, memoryview) else v for v in row] for key, row in rows.items()}
    assert rows[compiled_id] == rows[created.id]
    assert database.obj.param in statements._inserts[(type(database.obj).__name__, Message)][0]


def test_models_joined_through_a_joined_model_are_attached_as_peewee_attaches_them(db) -> None:  # type: ignore[no-untyped-def]
    from engine.outbound.delivery import load_message

    fed = f.federation_tree()
    ml = f.mailing_list("bureau", fed["dom"], dmarc_mode="never")
    message = Message.create(mailing_list=ml, author="a@b.fr", content=b"Subject: x\r\n\r\nbody\r\n", size=20,
                             state=MessageState.SENDING, received_at=clock.now())
    ours, info = load_message(message.id)
    theirs = Message.select(Message, MailingList, Domain).join(MailingList).join(Domain).where(
        Message.id == message.id).get()
    assert ours.__data__ == theirs.__data__ and bytes(ours.content) == b"Subject: x\r\n\r\nbody\r\n"
    assert ours.mailing_list.__data__ == theirs.mailing_list.__data__
    assert ours.mailing_list.domain.__data__ == theirs.mailing_list.domain.__data__
    assert info.address == f"bureau@{fed['dom'].name}" and not info.rewrite_from
