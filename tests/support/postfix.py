"""A private Postfix instance on loopback for tests: Debian's Postfix with its own configuration folder,
queue and log in a temporary folder, listening on a port of its own (``inet_interfaces = loopback-only``).

It stands in front of the engine (mail for the list domain handed over LMTP) or behind it (the smarthost
that relays the copies to a sink), with the configuration docs/operations.md documents. Postfix must run
as root here (its master drops to the ``postfix`` user), as it does in production.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.postgres import free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

# What every test instance shares: no local delivery, no DNS, no chroot, quick retries, a log file.
BASE = {
    "compatibility_level": "3.6",
    "meta_directory": "/etc/postfix",
    "mail_owner": "postfix",
    "setgid_group": "postdrop",
    "inet_interfaces": "loopback-only",
    "inet_protocols": "ipv4",
    "myhostname": "relay.palanquee.test",
    "mydomain": "palanquee.test",
    "mydestination": "",
    "mynetworks": "127.0.0.0/8",
    "alias_maps": "",
    "alias_database": "",
    "local_recipient_maps": "",
    "biff": "no",
    "smtputf8_enable": "yes",
    "disable_dns_lookups": "yes",
    "smtp_host_lookup": "native",
    "queue_run_delay": "1s",
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "2s",
    "smtpd_banner": "$myhostname ESMTP",
    "notify_classes": "",
}


@dataclass
class Postfix:
    """One running instance: ``port`` is its SMTP server on 127.0.0.1."""

    folder: Path
    port: int
    main: dict[str, str] = field(default_factory=dict)
    service_port: int = 0  # the port of the extra service (the relay port behind the engine), when asked

    @property
    def config(self) -> Path:
        return self.folder / "etc"

    @property
    def log_file(self) -> Path:
        return self.folder / "maillog"

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # postfix only prints its own errors on a terminal; they also go to the log file.
        return subprocess.run([POSTFIX, "-c", str(self.config), *args], capture_output=True, text=True,
                              check=check, timeout=60)

    def start(self) -> None:
        result = self._postfix("start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stderr.strip()}\n{self.log()[-2000:]}")
        wait_for_port(self.port)

    def stop(self) -> None:
        self._postfix("stop", check=False)
        pid_file = self.folder / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 60
        while pid_file.exists() and _alive(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)

    def flush(self) -> None:
        """Retry every deferred message now (`postqueue -f` for this instance)."""
        self._postfix("flush", check=False)

    def queue_size(self) -> int:
        """Messages still in the instance's queue (any state).

        Only complete queue files count: cleanup(8) sets a file's owner-execute bit once the message is
        whole, and the queue manager never picks up a file without it. A cleanup killed by ``postfix stop``
        can leave an empty file without it in incoming/ (postsuper warns "bogus file name" at the next start
        and leaves it): no message, which never drains, and counting it made a restart test wait for ever.
        """
        total = 0
        for name in ("incoming", "active", "deferred", "hold", "maildrop"):
            for root, _dirs, files in os.walk(self.folder / "queue" / name):
                for file in files:
                    try:
                        complete = (Path(root) / file).stat().st_mode & 0o100
                    except OSError:  # moved to another queue folder meanwhile: counted there, or delivered
                        continue
                    total += bool(complete) or name == "maildrop"
        return total

    def describe(self) -> str:
        """What a failed test should print: the queue's files by folder (with their modes: a file without its
        owner-execute bit is still being written), `postqueue -p` and the end of the log."""
        lines = []
        for name in ("incoming", "active", "deferred", "hold", "maildrop", "corrupt"):
            for root, _dirs, files in os.walk(self.folder / "queue" / name):
                for file in files:
                    path = Path(root) / file
                    try:
                        mode = oct(path.stat().st_mode & 0o777)
                    except OSError:
                        mode = "gone"
                    lines.append(f"{name}/{path.relative_to(self.folder / 'queue' / name)} {mode}")
        queue = subprocess.run(["postqueue", "-c", str(self.config), "-p"], capture_output=True, text=True,
                               check=False, timeout=60)
        return "\n".join([f"queue files ({len(lines)}):", *lines[:40], "postqueue -p:", queue.stdout[-3000:],
                          "log:", self.log()[-6000:]])

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (OSError, ValueError):
        return False
    return True


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def master_cf(port: int, services: list[str]) -> str:
    """Debian's master.cf with its SMTP server moved to 127.0.0.1:port, chroot off, plus ``services``."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        if re.match(r"^smtp\s+inet\s", line):
            line = f"127.0.0.1:{port} inet n - n - - smtpd"
        else:  # chroot column off: a chroot would need a copy of /etc and the libraries
            line = re.sub(r"^(\S+\s+(?:unix|unix-dgram|inet|fifo|pass)\s+[-ny]\s+[-ny]\s+)y(\s)", r"\1n\2", line)
        lines.append(line)
    return "\n".join(lines + services) + "\n"


def make_postfix(main: Mapping[str, str], services: list[str] | None = None, *, service_port: str = "",
                 files: Mapping[str, list[str]] | None = None) -> Postfix:
    """Configure and start an instance with ``main`` added to the base settings of main.cf.

    ``services`` are master.cf lines; the address ``service_port`` in them becomes a free loopback port
    (``Postfix.service_port``). ``files`` are written to the configuration folder, and ``/etc/postfix/`` in
    ``main`` and in the files names that folder: the documented configuration runs unchanged but for paths.
    """
    folder = Path(tempfile.mkdtemp(prefix="palanquee-postfix-"))
    folder.chmod(0o755)  # the postfix user must reach its queue and data folders
    for name in ("etc", "queue", "data"):
        (folder / name).mkdir()
    shutil.chown(folder / "data", "postfix")
    # Commands of `postfix start` that drop root for the postfix user (postsuper, after a stop left a
    # half-written file in the queue) log to the file themselves: it must not be root's alone.
    (folder / "maillog").touch(0o644)
    shutil.chown(folder / "maillog", "postfix")
    config = str(folder / "etc") + "/"
    for name, lines in (files or {}).items():
        (folder / "etc" / name).write_text("".join(line.replace("/etc/postfix/", config) + "\n" for line in lines))
    for attempt in range(5):
        port, extra = free_port(), free_port()  # Postfix binds its own sockets: retry on a port taken meanwhile
        settings = {**BASE, "queue_directory": str(folder / "queue"), "data_directory": str(folder / "data"),
                    "maillog_file": str(folder / "maillog"), "maillog_file_prefixes": str(folder),
                    **{k: v.replace("/etc/postfix/", config) for k, v in main.items()}}
        (folder / "etc" / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        lines = [line.replace(service_port, f"127.0.0.1:{extra}") if service_port else line
                 for line in services or []]
        (folder / "etc" / "master.cf").write_text(master_cf(port, lines))
        instance = Postfix(folder, port, dict(settings), service_port=extra if service_port else 0)
        try:
            instance.start()
            if service_port:
                wait_for_port(extra)
            return instance
        except (RuntimeError, OSError):
            instance.stop()
            if attempt == 4 or "Address already in use" not in instance.log():
                shutil.rmtree(folder, ignore_errors=True)
                raise
    raise AssertionError("unreachable")


OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented(title: str) -> list[str]:
    """The lines of the fenced block of docs/operations.md whose first line is ``# <title>`` (comments kept out),
    so that the tests run Postfix with the configuration the operations guide documents."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", OPERATIONS.read_text(), flags=re.S | re.M)
    for block in blocks:
        lines = block.splitlines()
        if lines and lines[0].strip() == f"# {title}":
            return [line.split(" #")[0].rstrip() for line in lines[1:] if line.strip() and not line.startswith("#")]
    raise LookupError(f"docs/operations.md has no block titled {title!r}")


def documented_main(title: str, replace: Mapping[str, str]) -> dict[str, str]:
    """A documented main.cf block as settings, with each ``replace`` key (a port, a path) replaced."""
    settings = {}
    for line in documented(title):
        for old, new in replace.items():
            line = line.replace(old, new)
        name, _, value = line.partition("=")
        settings[name.strip()] = value.strip()
    return settings
