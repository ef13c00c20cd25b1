"""Issue 11 finding 2, delivery side: one bad message or copy never stops the others.

Rendering is made to raise for one post (the intake hardening of another branch keeps real poison
out; a fault of rendering must still be contained), or for one copy. Everything runs through a real
engine over SMTP, with the recording sink as smarthost.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from engine import clock
from engine.bounces import verp
from engine.config import Settings
from engine.intake import routes, service
from engine.lists.models import MailingList
from engine.outbound import delivery
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink

LIST = "comite_directeur.comite@listes.example.fr"


def _poison_on(monkeypatch: pytest.MonkeyPatch, marker: bytes) -> None:
    """Rendering raises for posts carrying ``marker``, as a multipart without its boundary once did."""
    real = delivery.prepare

    def prepare(raw: bytes, *args: object, **kwargs: object) -> object:
        if marker in raw:
            raise ValueError("multipart/mixed without a boundary")
        return real(raw, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(delivery, "prepare", prepare)


def _store(settings: Settings, **headers: str) -> int:
    """Commit a post as the intake does before its 250 (the engine is not running yet)."""
    route = routes.route(LIST, verp.signing_key(settings))
    outcome = service.receive(settings, route, "elodie.dupre@example.fr", post(**headers).as_bytes())
    assert outcome.accepted and outcome.message_id is not None
    return outcome.message_id


def _list_copies(sink: Sink) -> list[str]:
    return [rcpt for r in sink.handler.received if r.message["List-Id"] for rcpt in r.rcpt_tos]


def test_finding_11_2_an_unrenderable_post_fails_once_and_spares_its_batch(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_on(monkeypatch, b"X-Poison: yes")
    MailingList.update(owner=federation.outsider).where(MailingList.id == federation.board_list.id).execute()
    poison = _store(engine_settings, X_Poison="yes", subject="Programme")
    good = _store(engine_settings, subject="Sortie du samedi")
    engine = start_engine()  # both posts are expanded together, then claimed in one batch
    wait_until(lambda: Message.get_by_id(good).state == MessageState.DONE, what="the good post done")
    assert sorted(_list_copies(sink)) == ["Famille.Martin@example.fr", "elodie.dupre@example.fr"]
    assert all(r.message["Subject"].endswith("Sortie du samedi") for r in sink.handler.received
               if r.message["List-Id"])
    failed = Message.get_by_id(poison)
    assert failed.state == MessageState.FAILED
    assert failed.reason.startswith("554 5.6.0") and "without a boundary" in failed.reason
    copies = list(Delivery.select().where(Delivery.message == poison))
    assert [(d.state, d.attempts) for d in copies] == [(DeliveryState.FAILED, 1)] * 2
    assert all(d.last_reply.startswith("554 5.6.0") and d.claimed_by is None for d in copies)
    # The author and the list's owner are told once, in plain words, with the reason.
    wait_until(lambda: len(_notices(sink)) == 2, what="two notices")
    notices = _notices(sink)
    assert sorted(notices) == ["elodie.dupre@example.fr", "paul.durand@example.fr"]
    assert "n’a pas pu être diffusé" in notices["elodie.dupre@example.fr"]["Subject"]
    assert "without a boundary" in notices["paul.durand@example.fr"].get_content()
    # The engine goes on: a post sent over SMTP afterwards reaches everyone.
    send(engine, post(subject="Après la panne"))
    wait_until(lambda: len(_list_copies(sink)) == 4, what="the next post's copies")
    assert len(_notices(sink)) == 2


def _notices(sink: Sink) -> dict[str, object]:
    return {r.rcpt_tos[0]: r.message for r in sink.handler.received if r.message["Auto-Submitted"]}


def test_finding_11_2_an_automated_author_is_not_told(start_engine, federation: Federation, sink: Sink,
                                                      engine_settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_on(monkeypatch, b"X-Poison: yes")
    poison = _store(engine_settings, X_Poison="yes")
    Message.update(content=Message.get_by_id(poison).content.replace(b"X-Poison", b"Auto-Submitted: auto-generated\r\nX-Poison")
                   ).where(Message.id == poison).execute()
    start_engine()
    wait_until(lambda: Message.get_by_id(poison).state == MessageState.FAILED, what="failed")
    wait_until(lambda: len(_notices(sink)) == 1, what="the owner's notice")
    assert list(_notices(sink)) == ["webmaster@example.fr"]  # no owner: the administrator


def test_finding_11_2_a_copy_that_cannot_be_built_is_retried_then_failed_after_its_lifetime(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = delivery.PreparedMessage.envelope_and_copy

    def envelope_and_copy(self, item, *args, **kwargs):  # type: ignore[no-untyped-def]
        if item.address == "elodie.dupre@example.fr":
            raise UnicodeEncodeError("ascii", "é", 0, 1, "a footer that cannot be encoded")
        return real(self, item, *args, **kwargs)

    monkeypatch.setattr(delivery.PreparedMessage, "envelope_and_copy", envelope_and_copy)
    settings = dataclasses.replace(engine_settings, retry_first=timedelta(minutes=5),
                                   retry_max=timedelta(hours=1), retry_lifetime=timedelta(hours=3))
    with clock.frozen(datetime(2026, 12, 1, 9, 0)) as advance:
        engine = start_engine(settings)
        send(engine, post())
        wait_until(lambda: _list_copies(sink) == ["Famille.Martin@example.fr"], what="the other copy")
        broken = Delivery.get(Delivery.address == "elodie.dupre@example.fr")
        broken_id, seen = broken.id, []
        while broken.state != DeliveryState.FAILED:
            wait_until(lambda: _settled(broken_id, len(seen) + 1), what=f"attempt {len(seen) + 1} recorded")
            broken = Delivery.get_by_id(broken_id)
            seen.append(broken.attempts)
            assert "4.3.0 Internal error building the copy" in broken.last_reply
            advance(broken.next_attempt_at - clock.now())
        assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 3  # every attempt counted
        assert "gave up after" in broken.last_reply
        wait_until(lambda: Message.get().state == MessageState.DONE, what="message done")
    assert _list_copies(sink) == ["Famille.Martin@example.fr"]


def _settled(delivery_id: int, attempts: int) -> bool:
    row = Delivery.get_by_id(delivery_id)
    return row.attempts >= attempts and row.claimed_by is None and row.state != DeliveryState.QUEUED
