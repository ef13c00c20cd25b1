"""Engine processes forked from a process that imported the engine once: a restart costs a fork, not the
second of imports (CPU) that ``palanquee engine`` pays at each start. The chaos tests restart an engine
twenty times per run.

The zygote (``python -m tests.support.zygote``) imports what ``palanquee engine`` imports, starts no
thread and opens no connection, then reads one JSON request per line on its standard input
(``{"env": {...}, "log": PATH}``) and answers each with the pid of a child that runs
``palanquee engine`` (the same click command) with that environment, its output appended to ``log``.
The zygote reaps its children as they die (so their CPU time is counted in the test's); a test waits for
a killed one with ``gone()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _reap(signum: int, frame: object) -> None:  # pragma: no cover - runs in the zygote process
    """Collect dead children at once (their CPU time then counts in the zygote's, hence the test's)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _serve_forever() -> None:  # pragma: no cover - runs in the zygote process
    import portal.cli
    from engine import main  # noqa: F401 - what the engine command imports on its way

    signal.signal(signal.SIGCHLD, _reap)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.close(log)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.environ.clear()
                os.environ.update(request["env"])
                sys.argv = ["palanquee", "engine"]
                portal.cli.main()
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(pid, flush=True)


class Zygote:
    """The forking process, seen from the test."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "tests.support.zygote"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True,
                                        cwd=Path(__file__).resolve().parents[2])

    def spawn(self, env: dict[str, str], log: Path) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"env": env, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self.process.wait(30)


def gone(pid: int, timeout: float = 30) -> None:
    """Wait until process ``pid`` no longer exists."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} still runs")
        time.sleep(0.02)


if __name__ == "__main__":
    _serve_forever()
