"""Runs ``portal.cli`` under cProfile timed by each thread's own CPU (``time.thread_time``).

    python -m bench.profiled OUT.prof engine

The fan-out uses it for its first engine when ``FANOUT_PROFILE`` names a path, the intake benchmark when
``INTAKE_PROFILE`` does: wall-clock profiles on a shared machine mostly measure the other processes; thread
CPU time is what each thread itself spends. ``OUT.prof`` is the main thread (the event loop), ``OUT.db.prof``
the engine's database thread (every ``run_in_db`` call, profiled on the thread that runs it).
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import threading
import time
from typing import Any


def _profile_database_thread() -> cProfile.Profile:
    """Profile every call ``Engine._call`` runs (the database thread), from its first call on."""
    from engine import runtime

    profile = cProfile.Profile(time.thread_time)
    original = runtime.Engine._call
    enabled: set[int] = set()

    def call(self: runtime.Engine, function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if threading.get_ident() not in enabled and not enabled:  # the one database thread
            enabled.add(threading.get_ident())
            profile.enable()
        return original(self, function, args, kwargs)

    runtime.Engine._call = call  # type: ignore[method-assign]
    return profile


def main() -> None:
    out = sys.argv[1]
    sys.argv = ["palanquee", *sys.argv[2:]]
    database_profile = _profile_database_thread()
    profile = cProfile.Profile(time.thread_time)
    try:
        profile.runcall(runpy.run_module, "portal.cli", run_name="__main__")
    finally:
        profile.dump_stats(out)
        database_profile.create_stats()
        database_profile.dump_stats(f"{out}.db.prof")


if __name__ == "__main__":
    main()
