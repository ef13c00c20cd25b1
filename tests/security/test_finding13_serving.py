"""Finding 13: no request size limit, and Flask's development server (a thread per connection, no timeout).

``palanquee web`` is started for real (gunicorn, sync workers) on a free loopback port, on the test's database.
"""

from __future__ import annotations

import http.client
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from flask.testing import FlaskClient

from tests.conftest import TEST_SECRET
from tests.security.conftest import token_of, wait_until

WORKERS = 2
HEADER_TIMEOUT = 2  # seconds, for the test (default 10 s)
MiB = 1024 * 1024


@dataclass
class WebServer:
    process: subprocess.Popen[bytes]
    host: str
    port: int

    def get(self, path: str) -> int:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        finally:
            connection.close()

    def threads(self) -> int:
        """Threads of the whole server: the arbiter and its workers."""
        parent = psutil.Process(self.process.pid)
        return sum(p.num_threads() for p in [parent, *parent.children(recursive=True)])


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[WebServer]:
    env = {**os.environ, "PALANQUEE_DATABASE_URL": db_url, "PALANQUEE_SECRET_KEY": TEST_SECRET,
           "PALANQUEE_INSTANCE": str(tmp_path / "instance"), "PALANQUEE_WEB_LISTEN": "127.0.0.1:0",
           "PALANQUEE_WEB_WORKERS": str(WORKERS), "PALANQUEE_WEB_HEADER_TIMEOUT": f"{HEADER_TIMEOUT}s",
           "PALANQUEE_WEB_TIMEOUT": "20s"}
    with open(tmp_path / "web.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "portal.cli", "web"], stdout=subprocess.PIPE,
                                   stderr=log, env=env)
    assert process.stdout is not None
    try:
        line, deadline = b"", time.monotonic() + 60
        while b"\n" not in line and time.monotonic() < deadline and process.poll() is None:
            if select.select([process.stdout], [], [], 1)[0]:
                line += os.read(process.stdout.fileno(), 4096)
        found = re.match(rb"portal: http://127\.0\.0\.1:(\d+)/", line)
        assert found, (line, (tmp_path / "web.log").read_text())
        yield WebServer(process, "127.0.0.1", int(found.group(1)))
    finally:
        process.terminate()
        process.wait(60)
        process.stdout.close()


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_finding13_500_half_open_connections_do_not_stop_a_normal_request(web: WebServer):
    idle = [socket.create_connection((web.host, web.port)) for _ in range(500)]
    stalled = [socket.create_connection((web.host, web.port)) for _ in range(20)]
    for sock in stalled:  # slowloris: a request head that never ends
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    try:
        assert web.get("/healthz") == 503  # served; unhealthy only because no engine runs here
        assert web.get("/login") == 200
        assert web.threads() <= 2 * (WORKERS + 1), "a thread per connection"
        # and the server lets none of them linger: each is closed once its head is overdue
        wait_until(lambda: all(closed_by_server(s) for s in idle + stalled), timeout=10 * HEADER_TIMEOUT + 30,
                   what="the server to close the half-open connections")
        assert web.get("/healthz") == 503  # served; unhealthy only because no engine runs here
    finally:
        for sock in idle + stalled:
            sock.close()


def post_huge(web: WebServer, head: bytes, total: int) -> tuple[bytes, int]:
    """Send ``head`` then up to ``total`` body bytes, stopping as soon as the server answers: (answer, sent)."""
    sock = socket.create_connection((web.host, web.port), timeout=60)
    chunk, sent, answer = b"x" * MiB, 0, b""
    try:
        sock.sendall(head)
        sock.setblocking(False)
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(chunk[: min(MiB, total - sent)])
                except (BlockingIOError, ConnectionError):
                    break
        sock.setblocking(True)
        sock.settimeout(30)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
    return answer, sent


def test_finding13_a_300_mib_post_to_login_is_refused_without_being_read_in_full(web: WebServer):
    total = 300 * MiB
    boundary = b"x-boundary"
    head = (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=" + boundary
            + b"\r\nContent-Length: " + str(total).encode() + b"\r\n\r\n--" + boundary
            + b'\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n')
    answer, sent = post_huge(web, head, total)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 64 * MiB, f"{sent / MiB:.0f} MiB read before the answer"
    chunked = (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary="
               + boundary + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer, sent = post_huge(web, chunked + b"%x\r\n" % total, total)  # one chunk announced, never finished
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 64 * MiB
    assert web.get("/healthz") == 503  # served; unhealthy only because no engine runs here


def multipart(fields: dict[str, str], file: bytes) -> tuple[bytes, str]:
    """A multipart body built in memory (werkzeug's test client spools large ones to a file it never closes
    when the app refuses the body unread)."""
    boundary = "palanquee-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="export.csv"\r\n'
                 "Content-Type: text/csv\r\n\r\n".encode() + file + f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_finding13_only_the_import_upload_takes_a_larger_body(app, federal: FlaskClient, settings):
    big = b"numero_licence;nom;prenom;email;club;saison;roles\n" + b"\n" * (settings.max_request_size + 10)
    body, kind = multipart({"csrf_token": token_of(federal, "/admin/import")}, big)
    page = federal.post("/admin/import", data=body, content_type=kind)
    assert page.status_code == 200 and "0 lignes" in page.get_data(as_text=True)
    body, kind = multipart({"identifier": "x"}, big)
    assert federal.post("/login", data=body, content_type=kind).status_code == 413
    body, kind = multipart({"csrf_token": token_of(federal, "/admin/import")}, b"x" * (settings.max_upload_size + 10))
    assert federal.post("/admin/import", data=body, content_type=kind).status_code == 413


def test_finding13_demo_serves_with_gunicorn_and_runs_the_engine_in_a_child(tmp_path: Path):
    env = {**os.environ, "PALANQUEE_INSTANCE": str(tmp_path / "instance"), "PALANQUEE_WEB_LISTEN": "127.0.0.1:0",
           "PALANQUEE_SMTP_LISTEN": "127.0.0.1:0", "PALANQUEE_WEB_WORKERS": str(WORKERS),
           "PALANQUEE_DELIVERY_PROCESSES": "1"}
    env.pop("PALANQUEE_DATABASE_URL", None)
    with open(tmp_path / "demo.log", "wb") as log:
        demo = subprocess.Popen([sys.executable, "-m", "portal.cli", "demo", "--members", "20"],
                                stdout=subprocess.PIPE, stderr=log, env=env)
    assert demo.stdout is not None
    tree = psutil.Process(demo.pid)
    try:
        out, deadline = b"", time.monotonic() + 120
        while b"serving the portal on" not in out and time.monotonic() < deadline and demo.poll() is None:
            if select.select([demo.stdout], [], [], 1)[0]:
                out += os.read(demo.stdout.fileno(), 65536)
        web = re.search(rb"portal: +http://127\.0\.0\.1:(\d+)/", out)
        smtp = re.search(rb"list engine: +SMTP 127\.0\.0\.1:(\d+)", out)
        assert web and smtp, (out, (tmp_path / "demo.log").read_text())
        server = WebServer(demo, "127.0.0.1", int(web.group(1)))
        wait_until(lambda: len(tree.children()) == WORKERS + 1, what="the web workers")
        wait_until(lambda: server.get("/healthz") == 200, what="healthy: the demo's engine beats")
        with socket.create_connection(("127.0.0.1", int(smtp.group(1))), timeout=30) as engine:
            assert engine.recv(1024).startswith(b"220")
        children = tree.children()
        engines = [p for p in children if "engine_main" in " ".join(p.cmdline())]
        assert len(engines) == 1 and not engines[0].children()  # the engine is a child of the demo, not of a worker
        assert all(p.children() == [] for p in children)  # nothing runs under a web worker
    finally:
        everyone = [tree, *tree.children(recursive=True)]
        demo.terminate()
        demo.wait(60)
        demo.stdout.close()
        gone, alive = psutil.wait_procs(everyone, timeout=60)
        assert not alive, alive
