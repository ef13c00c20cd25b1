"""Longer fault-injection runs than CI's: the kill -9 test of ``tests/chaos/test_kill.py`` with more
recipients, more kills, several seeds, on SQLite or PostgreSQL.

    python -m bench.chaos [--size 100000] [--kills 50] [--runs 3] [--db sqlite|postgresql] [--seed N]

Each run prints its seed, where each kill fell and how many copies arrived twice (only copies on the
wire at a kill may: at most 2 × connections per kill). ``--all`` runs the whole chaos folder instead
(the smarthost's faults, the full disk, the short lease) ``--runs`` times, to hunt for rare failures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="recipients of the send")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", default="", help="replay one run's kill points")
    parser.add_argument("--all", action="store_true", help="the whole tests/chaos folder")
    args = parser.parse_args()
    target = "tests/chaos" if args.all else "tests/chaos/test_kill.py"
    env = {**os.environ, "PALANQUEE_CHAOS_SIZE": str(args.size), "PALANQUEE_CHAOS_KILLS": str(args.kills)}
    if args.seed:
        env["PALANQUEE_CHAOS_SEED"] = args.seed
    failures = 0
    for run in range(1, args.runs + 1):
        print(f"run {run}/{args.runs}: {target}, {args.size} recipients, {args.kills} kills, {args.db}, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", target, "-q", "-s", "-p", "no:cacheprovider",
                                 f"--db={args.db}"], cwd=ROOT, env=env)
        print(f"run {run}: {'passed' if result.returncode == 0 else 'FAILED'} in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        failures += result.returncode != 0
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
