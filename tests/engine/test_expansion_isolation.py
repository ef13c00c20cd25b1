"""A post whose expansion raises is failed with the error and never holds up the posts accepted after it
(it used to be retried first, forever: an address shared by 150 members overflowed ``delivery.member_ids``
on PostgreSQL and wedged every later post); an unreachable database is still an outage, retried."""

from __future__ import annotations

import peewee
import pytest

from engine import jobs
from engine.config import Settings
from engine.outbound.models import Delivery
from engine.posting import expand as expansion
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation
from tests.engine.test_expansion_once import accepted_post


def failing_for(poison: int, error: Exception):  # type: ignore[no-untyped-def]
    """``expand`` as it is, but raising ``error`` for message ``poison`` (a fault injected in one post)."""
    def expand(message_id: int) -> int | None:
        if message_id == poison:
            raise error
        return expansion.expand(message_id)
    return expand


def test_a_post_that_cannot_be_expanded_fails_alone(federation: Federation, engine_settings: Settings,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    poison, good = accepted_post(engine_settings), accepted_post(engine_settings)
    monkeypatch.setattr(jobs, "expand", failing_for(poison, peewee.DataError("value too long for type character varying(255)")))
    assert jobs.expand_accepted() == 1
    failed = Message.get_by_id(poison)
    assert failed.state == MessageState.FAILED and "value too long" in failed.reason and failed.finished_at
    assert Message.get_by_id(good).state == MessageState.SENDING
    assert Delivery.select().where(Delivery.message == good).count() == 2
    assert not Delivery.select().where(Delivery.message == poison).exists()
    assert jobs.expand_accepted() == 0  # not tried again


def test_an_unreachable_database_is_an_outage_not_a_failed_post(federation: Federation, engine_settings: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    message_id = accepted_post(engine_settings)
    monkeypatch.setattr(jobs, "expand", failing_for(message_id, peewee.OperationalError("server closed the connection")))
    with pytest.raises(peewee.OperationalError):
        jobs.expand_accepted()
    assert Message.get_by_id(message_id).state == MessageState.ACCEPTED  # the engine backs off and tries again
    monkeypatch.setattr(jobs, "expand", expansion.expand)
    assert jobs.expand_accepted() == 1
