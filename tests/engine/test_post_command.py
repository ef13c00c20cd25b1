"""`palanquee post`: the demo's way to post without swaks, against the real engine on loopback."""

from __future__ import annotations

import socket

from click.testing import CliRunner

from engine.post import post_command
from engine.posting.models import Message, MessageState
from tests.engine.conftest import Federation, wait_until
from tests.support.sink import Sink


def test_post_reaches_the_list_and_reports_the_engine_reply(start_engine, federation: Federation, sink: Sink) -> None:
    engine = start_engine()
    server = "{}:{}".format(*engine.bound["smtp"])
    result = CliRunner().invoke(post_command, ["--server", server, "--from", "elodie.dupre@example.fr", "--to",
                                               federation.board_list.address, "--subject", "Sortie", "Bonjour à tous"])
    assert result.exit_code == 0, result.output
    assert f"sent to {federation.board_list.address} through {server}: 250" in result.output
    wait_until(lambda: len(sink.handler.received) == 2, what="the board's two copies")
    copy = sink.handler.received[0].message
    assert copy["Subject"].endswith("Sortie") and "Bonjour à tous" in copy.get_body().get_content()
    assert Message.get().state in (MessageState.SENDING, MessageState.DONE)


def test_post_says_why_it_failed(start_engine, federation: Federation) -> None:
    engine = start_engine()
    server = "{}:{}".format(*engine.bound["smtp"])
    refused = CliRunner().invoke(post_command, ["--server", server, "--from", "a@example.org",
                                                "--to", "nobody@listes.example.fr"])
    assert refused.exit_code == 1 and "nobody@listes.example.fr refused at RCPT: 550" in refused.output
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        where = f"127.0.0.1:{closed.getsockname()[1]}"
        result = CliRunner().invoke(post_command, ["--server", where, "--from", "a@example.org", "--to", "x@y.fr"])
    assert result.exit_code == 1 and f"no list engine answers at {where}" in result.output
    bad = CliRunner().invoke(post_command, ["--server", "nowhere", "--from", "a@example.org", "--to", "x@y.fr"])
    assert bad.exit_code == 2 and "--server" in bad.output
