"""Issue 16: the engine's Postfix socketmap table, spoken to over loopback by a socket client and by Postfix's
own ``postmap``: list addresses, companions and genuine VERP addresses exist, nothing else does."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from engine import clock
from engine.bounces import verp
from engine.config import Settings
from tests import factories
from tests.engine.conftest import Federation

LIST = "comite_directeur.comite@listes.example.fr"


class Client:
    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.buffer = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, key: str, name: str = "recipients") -> str:
        request = f"{name} {key}".encode()
        self.send_raw(str(len(request)).encode() + b":" + request + b",")
        return self.reply()

    def reply(self) -> str:
        while b":" not in self.buffer:
            self._fill()
        length, _, rest = self.buffer.partition(b":")
        while len(rest) < int(length) + 1:
            self._fill()
            length, _, rest = self.buffer.partition(b":")
        assert rest[int(length):int(length) + 1] == b","
        self.buffer = rest[int(length) + 1:]
        return rest[:int(length)].decode()

    def closed_by_peer(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _fill(self) -> None:
        chunk = self.sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def socketmap(start_engine, federation: Federation):  # type: ignore[no-untyped-def]
    engine = start_engine(socketmap=("127.0.0.1", 0))
    client = Client(engine.bound["socketmap"])
    yield client
    client.close()


def test_issue16_socketmap_knows_lists_companions_and_genuine_verp_addresses(
        socketmap: Client, federation: Federation, engine_settings: Settings) -> None:
    key = verp.signing_key(engine_settings)
    genuine = verp.return_path("comite_directeur.comite", "listes.example.fr", verp.make_token(key, 42))
    answers = {address: socketmap.ask(address) for address in (
        LIST, LIST.upper(), "comite_directeur.comite-request@listes.example.fr",
        "comite_directeur.comite-owner@listes.example.fr", "comite_directeur.comite-unsubscribe@listes.example.fr",
        "comite_directeur.comite-leave@listes.example.fr", "comite_directeur.comite-bounces@listes.example.fr",
        genuine)}
    assert answers == {
        LIST: "OK post", LIST.upper(): "OK post",
        "comite_directeur.comite-request@listes.example.fr": "OK request",
        "comite_directeur.comite-owner@listes.example.fr": "OK owner",
        "comite_directeur.comite-unsubscribe@listes.example.fr": "OK unsubscribe",
        "comite_directeur.comite-leave@listes.example.fr": "OK unsubscribe",
        "comite_directeur.comite-bounces@listes.example.fr": "OK bounces",
        genuine: "OK bounces",
    }


def test_issue16_socketmap_refuses_permanently_what_the_intake_would_refuse(socketmap: Client,
                                                                           federation: Federation) -> None:
    off = factories.domain("listes.codep13.fr", structure=federation.region, enabled=False)
    factories.mailing_list("bureau", off)
    gone = factories.mailing_list("ancienne", federation.domain, deleted_at=clock.now())
    for address in ("nosuchlist@listes.example.fr", "victim@gmail.com", "bureau@listes.codep13.fr",
                    gone.address, "comite_directeur.comite-bounces+forged.0123456789@listes.example.fr",
                    "@listes.example.fr", "not an address", ""):
        assert socketmap.ask(address) == "NOTFOUND ", address


def test_issue16_socketmap_answers_in_real_time(socketmap: Client, federation: Federation) -> None:
    assert socketmap.ask("nouvelle@listes.example.fr") == "NOTFOUND "
    created = factories.mailing_list("nouvelle", federation.domain)
    assert socketmap.ask("nouvelle@listes.example.fr") == "OK post"  # no cache to wait out
    created.deleted_at = clock.now()
    created.save()
    assert socketmap.ask("nouvelle@listes.example.fr") == "NOTFOUND "
    federation.domain.lists_enabled = False
    federation.domain.save()
    assert socketmap.ask(LIST) == "NOTFOUND "


def test_issue16_socketmap_temporary_failure_and_unknown_map(socketmap: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.intake import routes

    assert socketmap.ask(LIST, name="virtual").startswith("PERM ")

    def unreachable(address: str, key: bytes) -> routes.Route:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(routes, "route", unreachable)
    assert socketmap.ask(LIST).startswith("TEMP ")  # Postfix answers 4xx: the sender retries


@pytest.mark.parametrize("garbage", [b"hello\r\n", b"99999999:x,", b"5:abcdefg", b":,"])
def test_issue16_socketmap_closes_a_connection_that_does_not_speak_netstrings(socketmap: Client,
                                                                             garbage: bytes) -> None:
    socketmap.send_raw(garbage)
    assert socketmap.closed_by_peer()


@pytest.mark.skipif(shutil.which("postmap") is None, reason="Postfix's postmap is not installed")
def test_issue16_postfix_postmap_queries_the_socketmap(start_engine, federation: Federation, tmp_path: Path) -> None:
    engine = start_engine(socketmap=("127.0.0.1", 0))
    host, port = engine.bound["socketmap"]
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\n")  # postmap reads a configuration directory
    table = f"socketmap:inet:{host}:{port}:recipients"

    def postmap(key: str) -> tuple[int, str]:
        done = subprocess.run(["postmap", "-c", str(tmp_path), "-q", key, table], capture_output=True, text=True,
                              timeout=30)
        return done.returncode, done.stdout.strip()

    assert postmap(LIST) == (0, "post")
    assert postmap("Comite_Directeur.Comite-Request@listes.example.fr") == (0, "request")
    assert postmap("nosuchlist@listes.example.fr") == (1, "")
