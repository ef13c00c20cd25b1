"""The engine's one database thread: intake calls served before fan-out, waiting posts stored together.

Every database call of an engine runs here, one at a time, on one connection. Two rules keep the intake
ahead of fan-out under a burst of posts (docs/engine.md, "The database thread"):

- **Priority, not starvation.** A call of the intake (RCPT, DATA) runs before waiting background work
  (expansion, delivery, jobs): accepted posts are committed, so their fan-out may lag. After ``fairness``
  intake calls in a row while background work waits, one background call runs, so fan-out always progresses.
- **Group commit.** The posts waiting at DATA are stored in one transaction, and each is answered only once
  that transaction has committed. When anything in the group fails (a post, or the commit itself), the group
  is rolled back and each post is stored again in a transaction of its own: a failure is answered to the post
  it belongs to, and no post is answered 250 unless its own row was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("palanquee.engine")

INTAKE, BACKGROUND = 0, 1
FAIRNESS = 8  # intake calls in a row before a waiting background call runs
GROUP_MAX = 64  # posts stored in one transaction at most

Call = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]  # runs on the thread's connection
After = Callable[[], None]  # what a stored post does once committed (its notices)


@dataclass
class _Work:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    grouped: bool = False
    outcome: tuple[Any, BaseException | None] = field(default=(None, None))


class DatabaseThread:
    """One thread running database calls by priority. ``call`` runs one function on the thread's connection
    (checking and reconnecting it), ``transaction`` opens a transaction (``database.atomic``)."""

    def __init__(self, call: Call, transaction: Callable[[], AbstractContextManager[Any]], *,
                 name: str = "palanquee-db", fairness: int = FAIRNESS) -> None:
        self._call, self._transaction, self.fairness = call, transaction, fairness
        self._queues: tuple[deque[_Work], deque[_Work]] = (deque(), deque())
        self._ready = threading.Condition()
        self._closed = False
        self._in_a_row = 0  # intake calls served while background work waited
        self.groups = 0  # transactions that stored more than one post (tests and benchmarks read them)
        self.largest_group = 0
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)  # started by the first call

    def submit(self, function: Callable[..., Any], *args: Any, priority: int = BACKGROUND, grouped: bool = False,
               **kwargs: Any) -> asyncio.Future[Any]:
        """Queue ``function(*args, **kwargs)``; the returned future (of the running loop) has its result.

        ``grouped``: ``function`` stores a post inside the caller's transaction and returns ``(result, after)``,
        ``after`` (or None) being run once it is committed; the future then has ``result``. Grouped calls
        are intake calls."""
        loop = asyncio.get_running_loop()
        work = _Work(function, args, kwargs, loop, loop.create_future(), grouped)
        with self._ready:
            if self._closed:
                raise RuntimeError("the database thread is shut down")
            if not self._thread.is_alive():
                self._thread.start()
            self._queues[INTAKE if grouped else priority].append(work)
            self._ready.notify()
        return work.future

    def waiting(self, priority: int | None = None) -> int:
        """Calls queued and not yet started (of ``priority``, or all)."""
        with self._ready:
            return sum(len(queue) for n, queue in enumerate(self._queues) if priority in (None, n))

    def shutdown(self) -> None:
        """Run what is queued, then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _next(self) -> list[_Work] | None:
        """The next call, or the group of posts waiting at DATA; None once shut down and drained."""
        with self._ready:
            intake, background = self._queues
            while not intake and not background:
                if self._closed:
                    return None
                self._ready.wait()
            if intake and (not background or self._in_a_row < self.fairness):
                self._in_a_row = self._in_a_row + 1 if background else 0
                first = intake.popleft()
                return self._group(first, intake) if first.grouped else [first]
            self._in_a_row = 0
            return [background.popleft()]

    @staticmethod
    def _group(first: _Work, intake: deque[_Work]) -> list[_Work]:
        """``first`` and the other posts waiting at DATA (the intake's other calls keep their order)."""
        group, others = [first], deque[_Work]()
        while intake and len(group) < GROUP_MAX:
            work = intake.popleft()
            (group if work.grouped else others).append(work)
        intake.extendleft(reversed(others))
        return group

    def _serve(self) -> None:
        name_os_thread(self._thread.name)
        while (works := self._next()) is not None:
            if works[0].grouped:
                self._store(works)
            else:
                works[0].outcome = self._run(works[0].function, works[0].args, works[0].kwargs)
            self._settle(works)

    def _run(self, function: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> tuple[Any, BaseException | None]:
        try:
            return self._call(function, args, kwargs), None
        except Exception as exc:  # noqa: BLE001 - handed to the caller's future
            return None, exc

    def _store(self, works: list[_Work]) -> None:
        """Store the posts in one transaction; if that fails, each in its own (see the module's docstring)."""
        if len(works) > 1:
            results, error = self._run(self._in_transaction, (works,), {})
            if error is None:
                self.groups += 1
                self.largest_group = max(self.largest_group, len(works))
                self._committed(works, results)
                return
            log.info("a group of %s posts failed (%s: %s); storing each on its own", len(works),
                     type(error).__name__, error)
        for work in works:
            results, error = self._run(self._in_transaction, ([work],), {})
            if error is not None:
                work.outcome = (None, error)
            else:
                self._committed([work], results)

    def _in_transaction(self, works: list[_Work]) -> list[tuple[Any, After | None]]:
        with self._transaction():
            return [work.function(*work.args, **work.kwargs) for work in works]

    def _committed(self, works: list[_Work], results: list[tuple[Any, After | None]]) -> None:
        for work, (result, after) in zip(works, results, strict=True):
            work.outcome = (result, None)
            if after is not None:  # committed: its reply stands whatever happens now
                _, error = self._run(after, (), {})
                if error is not None:
                    log.error("after storing a post: %s: %s", type(error).__name__, error)

    @staticmethod
    def _settle(works: list[_Work]) -> None:
        """Hand the outcomes to their loops: one wake-up of each loop for the whole group."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Work]] = {}
        for work in works:
            by_loop.setdefault(work.loop, []).append(work)
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_set_outcomes, settled)


def name_os_thread(name: str) -> None:
    """Name the calling thread for the system too (``top -H``, ``/proc/PID/task/*/comm``, ``bench.intake``'s CPU
    by thread): Python 3.11 names its threads only for itself. Linux only; elsewhere nothing happens."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _set_outcomes(works: list[_Work]) -> None:
    for work in works:
        if work.future.cancelled():
            continue
        result, error = work.outcome
        if error is not None:
            work.future.set_exception(error)
        else:
            work.future.set_result(result)
