"""Fixtures for the list engine: a recording smarthost, the real engine on loopback, a small federation."""

from __future__ import annotations

import dataclasses
import smtplib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from engine import db as engine_db
from engine.config import Settings
from engine.directory.models import Member, Structure, StructureKind
from engine.lists.models import Domain, MailingList
from engine.runtime import Engine, EngineThread
from tests import factories
from tests.support.sink import Received, Sink, SinkHandler


def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


MARKER_SUBJECT = "Marqueur : tout ce qui précède est traité"


def settle(engine: Engine, federation: Federation, sink: Sink) -> None:
    """Post a marker to the board list and wait until it is done and its copies arrived.

    The engine expands posts oldest first and polls every 0.1 s: asserting right after a send that
    nothing was delivered passes whatever the code does. After ``settle``, everything sent before the
    marker has been through the engine, so an absence means something. Marker copies carry
    ``MARKER_SUBJECT`` (leave them out of counts with ``without_marker``).
    """
    from email.message import EmailMessage

    from engine.posting.models import Message, MessageState

    marker = EmailMessage()
    marker["From"], marker["To"], marker["Subject"] = federation.board[0].email, federation.board_list.address, \
        MARKER_SUBJECT
    marker.set_content("marqueur\n")
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        client.send_message(marker, from_addr=federation.board[0].email, to_addrs=[federation.board_list.address])
    done = Message.select().where((Message.subject == MARKER_SUBJECT) & (Message.state == MessageState.DONE))
    wait_until(done.exists, what="the marker post done")
    wait_until(lambda: len([r for r in sink.handler.received if MARKER_SUBJECT in str(r.message["Subject"])]) == 2,
               what="the marker's two copies")


def without_marker(received: list[Received]) -> list[Received]:
    return [r for r in received if MARKER_SUBJECT not in str(r.message["Subject"])]


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink(SinkHandler())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def engine_settings(settings: Settings, sink: Sink) -> Settings:
    return dataclasses.replace(settings, smarthost=sink.url, retry_first=timedelta(seconds=1),
                               retry_max=timedelta(seconds=2), delivery_lease=timedelta(seconds=30),
                               delivery_connections=4, admin_email="webmaster@example.fr")


@pytest.fixture
def start_engine(engine_settings: Settings, db) -> Iterator[Callable[..., Engine]]:  # type: ignore[no-untyped-def]
    """Start the real engine (SMTP and LMTP on free loopback ports); stopped after the test."""
    threads: list[EngineThread] = []

    def start(settings: Settings | None = None, **options: object) -> Engine:
        options.setdefault("poll_seconds", 0.1)
        thread = EngineThread(settings or engine_settings, smtp=("127.0.0.1", 0), lmtp=("127.0.0.1", 0),
                              **options)
        threads.append(thread)
        return thread.start()

    yield start
    stopped = [_stopped(thread) for thread in threads]  # every engine, even when one would not stop
    engine_db.bind(db)
    for error in stopped:
        if error is not None:
            raise error


def _stopped(thread: EngineThread) -> BaseException | None:
    """Stop ``thread``'s engine and join it; what went wrong, if anything (its database is released only after)."""
    try:
        thread.stop()
    except BaseException as error:
        return error
    # The engine bound the models to its own database object; this thread may have used it too.
    if not thread.engine.database.is_closed():
        thread.engine.database.close()
    return None


@dataclass
class Federation:
    region: Structure
    club: Structure
    other_club: Structure
    domain: Domain
    board_list: MailingList
    board: list[Member]
    outsider: Member


@pytest.fixture
def federation(db) -> Federation:  # type: ignore[no-untyped-def]
    """A region with two clubs; its board (3 people, two sharing a family address) on a role-based list."""
    national = factories.structure("FFESSM", kind=StructureKind.FEDERATION)
    region = factories.structure("Comité régional Provence", kind=StructureKind.REGIONAL, parent=national)
    club = factories.structure("Club de Cassis", kind=StructureKind.CLUB, parent=region)
    other_club = factories.structure("Club de Nice", kind=StructureKind.CLUB, parent=region)
    board_role = factories.role("membre_cd", "membre du comité directeur")
    president = factories.member("Élodie", "Dupré", email="elodie.dupre@example.fr", club=club)
    parent = factories.member("Jean", "Martin", email="Famille.Martin@example.fr", club=club)
    child = factories.member("Léa", "Martin", email="famille.martin@example.fr", club=club)
    for person in (president, parent, child):
        factories.mandate(person, board_role, region)
    outsider = factories.member("Paul", "Durand", email="paul.durand@example.fr", club=other_club)
    domain = factories.domain("listes.example.fr", structure=national)
    board_list = factories.mailing_list("comite_directeur.comite", domain, structure=region,
                                        name="Comité directeur – Provence")
    factories.criterion(board_list, region, [board_role])
    return Federation(region, club, other_club, domain, board_list, [president, parent, child], outsider)
