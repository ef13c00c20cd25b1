"""Runs ``portal.cli`` under cProfile timed by the main thread's own CPU (``time.thread_time``).

    python -m bench.profiled OUT.prof engine

The fan-out uses it for its first engine when ``FANOUT_PROFILE`` names a path: wall-clock profiles on a
shared machine mostly measure the other processes; thread CPU time is what the event loop itself spends
(the database thread's work is not in it: the fan-out's per-thread CPU split shows that part).
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out = sys.argv[1]
    sys.argv = ["palanquee", *sys.argv[2:]]
    profile = cProfile.Profile(time.thread_time)
    try:
        profile.runcall(runpy.run_module, "portal.cli", run_name="__main__")
    finally:
        profile.dump_stats(out)


if __name__ == "__main__":
    main()
