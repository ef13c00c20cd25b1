"""The README's first command, as a newcomer meets it: `palanquee demo` on ports it binds itself, a post
with the command it prints, links in the captured mail that open the running portal, the same summary
on every start."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from engine import demo as demo_data

PALANQUEE = Path(sys.executable).with_name("palanquee")  # the venv's entry point, as bin/demo runs it


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None and not any(re.search(pattern, x) for x in self.lines):
                raise AssertionError("the demo stopped:\n" + "\n".join(self.lines))
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError("the demo did not stop on Ctrl-C:\n" + "\n".join(self.lines[-30:])) from None
        return self.close()

    def close(self) -> int:
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait(30)
        if self.reader is not None:
            self.reader.join(30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


@pytest.fixture
def start_demo(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    started: list[Demo] = []
    env = {**os.environ, "PALANQUEE_INSTANCE": str(tmp_path / "instance"), "PYTHONWARNINGS": "error",
           "PALANQUEE_WEB_LISTEN": "127.0.0.1:0", "PALANQUEE_SMTP_LISTEN": "127.0.0.1:0"}
    for name in ("PALANQUEE_BASE_URL", "PALANQUEE_SECRET_KEY", "PALANQUEE_CONFIG", "PALANQUEE_MAIL_FROM",
                 "PALANQUEE_ADMIN_EMAIL", "PALANQUEE_DATABASE_URL", "PALANQUEE_SMARTHOST"):
        env.pop(name, None)

    def start() -> Demo:
        process = subprocess.Popen([str(PALANQUEE), "demo", "--members", "40"], cwd=tmp_path, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        demo = Demo(process)
        demo.reader = threading.Thread(target=demo.read, daemon=True)
        demo.reader.start()
        started.append(demo)
        demo.wait_for(r"^serving the portal on ")
        return demo

    yield start
    for demo in started:
        demo.close()


def captured(folder: Path) -> list[EmailMessage]:
    return [BytesParser(policy=policy.default).parsebytes(path.read_bytes())  # type: ignore[misc]
            for path in sorted((folder / "new").iterdir())]


def wait_for_mail(folder: Path, count: int, timeout: float = 60.0) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while (found := captured(folder)) and len(found) < count or not found:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} captured messages, expected {count}")
        time.sleep(0.05)
    return found


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (loopback)
        return int(response.status)


@pytest.mark.skipif(not PALANQUEE.exists(), reason="needs the palanquee entry point (bin/venv)")
def test_the_demo_links_open_its_portal_and_its_summary_is_stable(start_demo, tmp_path: Path) -> None:
    demo = start_demo()
    base_url = demo.wait_for(r"^portal: +(http://127\.0\.0\.1:\d+)/").group(1)
    assert not base_url.endswith(":0") and get(base_url + "/") == 200
    summary = demo.wait_for(r"^demo federation: .*").group(0)
    folder = Path(demo.wait_for(r"^captured mail: (\S+)/new/").group(1))
    assert (folder / "new").is_dir() and not list((folder / "new").iterdir()), "the capture exists from the start"
    assert f"mail from:     noreply@{demo_data.LIST_DOMAIN}" in demo.lines

    post = demo.wait_for(r"^  (\S+ post .*)$").group(1)  # the command the demo prints, run as printed
    result = subprocess.run(shlex.split(post), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "250" in result.stdout, result.stderr
    copies = wait_for_mail(folder, 4)
    unsubscribe = copies[0]["List-Unsubscribe"]
    link = re.search(r"<(http[^>]+)>", unsubscribe).group(1)  # type: ignore[union-attr]
    assert link.startswith(base_url + "/u/") and get(link) == 200

    # A stranger's post is held: the moderation request comes from the demo's domain, its link opens here.
    outsider = post.replace(demo_data.DEMO_POSTER, "inconnu@example.org")
    assert subprocess.run(shlex.split(outsider), capture_output=True, timeout=60).returncode == 0
    deadline = time.monotonic() + 60
    while not (requests := [m for m in captured(folder) if "/moderation/" in m.get_body().get_content()]):
        assert time.monotonic() < deadline, "no moderation request"
        time.sleep(0.05)
    assert requests[0]["From"].addresses[0].addr_spec == f"noreply@{demo_data.LIST_DOMAIN}"
    moderation = re.search(r"(http://\S+/moderation/\S+)", requests[0].get_body().get_content()).group(1)
    assert moderation.startswith(base_url + "/") and get(moderation) == 200

    assert demo.stop() == 0
    again = start_demo()
    assert again.wait_for(r"^demo federation: .*").group(0) == summary
