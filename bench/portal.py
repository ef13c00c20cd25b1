"""What the portal's pages cost at 100,000 members, against a plain Flask page measured in the same run.

    python -m bench.portal [--members 100000] [--lists 200] [--rounds 3] [--requests 300] [--no-load] [--profile]
    python -m bench.portal --postgresql …   (a private PostgreSQL cluster on loopback; --database-url: a server)

1. Builds the demo federation (``engine.demo.build``) in a new SQLite file (or a fresh PostgreSQL database); gives the demo password to 100
   members (holders of mandates first) and logs them in through the real login form.
2. In-process (Flask's test client, one thread): CPU per request (``time.process_time``, plus the database
   server's with ``--postgresql``, psutil over its processes) of Mon espace, of the
   login POST (argon2 included, and measured alone), and of the baseline page (bench/plain_page.py), the pages
   interleaved round by round, each request checked to be the member's own page.
3. Under the production server: gunicorn with 2 sync workers, ``wrk`` with 50 connections rotating the 100
   members' session cookies (bench/rotate.lua) for 10 s per page and round: requests/s, p50/p99, answers
   that are not 2xx, and the servers' CPU per request (psutil over the process tree).
4. Adds 200 lists reaching every licensee (about 100,000 addresses each), messages of 100,000 deliveries and an
   audit journal of 1,000,000 events, then measures the staff pages in-process against the baseline again.

Every figure is a ratio to the baseline of the same round: the machine is shared, absolute times are not.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from itertools import cycle
from pathlib import Path
from typing import Any

from bench import portal_data, portal_load, postgres
from bench.plain_page import create_plain_app
from engine import db as engine_db
from engine import demo
from engine.config import Settings, load_settings
from engine.directory import passwords
from engine.directory.models import Member
from portal import create_app, rendering
from portal.espace.page import forget as forget_pages

UA = {"User-Agent": "palanquee-bench"}
SECRET = "bench-secret-key-0123456789-abcdef"
Check = Callable[[str], bool]


def log_in(app: Any, licence: str) -> Any:
    """A test client logged in through the real form (CSRF, argon2, server-side session)."""
    client = app.test_client()
    page = client.get("/login", headers=UA).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    answer = client.post("/login", headers=UA, data={"identifier": licence, "password": demo.DEMO_PASSWORD,
                                                     "csrf_token": token})
    assert answer.status_code == 302, (licence, answer.status_code)
    return client


class Target:
    """One page for several members: each request goes to the next member's client and is checked."""

    def __init__(self, name: str, visits: list[tuple[Any, str, Check]], method: str = "GET",
                 data: Callable[[Any], dict[str, str]] | None = None,
                 before: Callable[[], None] | None = None) -> None:
        self.name, self.visits, self.method, self.data, self.before = name, cycle(visits), method, data, before

    def once(self) -> None:
        client, path, check = next(self.visits)
        if self.before is not None:
            self.before()
        if self.method == "GET":
            answer = client.get(path, headers=UA)
        else:
            answer = client.post(path, headers=UA, data=self.data(client) if self.data else {})
        body = answer.get_data(as_text=True)
        assert answer.status_code in (200, 302) and check(body), (self.name, path, answer.status_code, body[:300])

    def cpu_ms(self, requests: int) -> float:
        started = cpu_now()
        for _ in range(requests):
            self.once()
        return (cpu_now() - started) / requests * 1000


DATABASE_SERVER: list[int] = []  # the private PostgreSQL cluster's processes, when the run has one


def cpu_now() -> float:
    """This process's CPU seconds, plus the database server's when it is a private PostgreSQL cluster: on SQLite
    the database's work is in-process, on PostgreSQL most of it (the exact count's) happens in the server."""
    return time.process_time() + (postgres.tree_cpu(DATABASE_SERVER) if DATABASE_SERVER else 0.0)


def rounds(targets: list[Target], baseline: Target, runs: int, requests: dict[str, int],
           default: int) -> dict[str, list[tuple[float, float]]]:
    """Per target, per round: (its CPU ms per request, the baseline's in the same round)."""
    found: dict[str, list[tuple[float, float]]] = {t.name: [] for t in targets}
    for target in [baseline, *targets]:
        for _ in range(3):
            target.once()  # warm: templates compiled, caches filled, as in a running server
    for _ in range(runs):
        base = baseline.cpu_ms(default)
        for target in targets:
            found[target.name].append((target.cpu_ms(requests.get(target.name, default)), base))
    return found


def report(title: str, found: dict[str, list[tuple[float, float]]]) -> None:
    print(f"\n{title} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print("| page | CPU ms per request (rounds) | baseline ms (same rounds) | ratio, median (min–max) |")
    print("|---|---|---|---|")
    for name, pairs in found.items():
        ratios = [mine / base for mine, base in pairs]
        print(f"| {name} | {' / '.join(f'{m:.2f}' for m, _ in pairs)} | {' / '.join(f'{b:.2f}' for _, b in pairs)} "
              f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")


def member_ids(licences: list[str]) -> dict[str, int]:
    return {n: i for i, n in Member.select(Member.id, Member.licence_number)
            .where(Member.licence_number.in_(licences)).tuples().iterator()}


def plain_clients(plain: Any, ids: dict[str, int]) -> list[tuple[Any, str, Check]]:
    visits = []
    for licence, member_id in ids.items():
        client = plain.test_client()
        assert client.post(f"/plain/login/{member_id}", headers=UA).status_code == 302
        visits.append((client, "/plain/", lambda body, n=licence: n in body))
    return visits


def member_space(app: Any, plain: Any, licences: list[str], args: argparse.Namespace) -> tuple[list[Any], Target]:
    clients = [log_in(app, licence) for licence in licences]
    baseline = Target("plain page (baseline)", plain_clients(plain, member_ids(licences)))
    visits = [(c, "/espace/", lambda body, n=n: n in body) for c, n in zip(clients, licences, strict=True)]
    espace = Target("Mon espace", visits)
    # The page keeps parts rendered once (portal/rendering.fragment): with 100 members rotating, even each
    # member's own profile card is kept. A member seen for the first time since the server started pays
    # for every part: the same page with nothing kept gives that upper bound.
    def forget() -> None:
        rendering.fragment_cache_clear()
        forget_pages(app)

    cold = Target("Mon espace, no part kept (first view after a start)", visits, before=forget)
    def login_form(client: Any) -> dict[str, str]:
        client.delete_cookie("session")  # a new visitor each time: the login page, then its form
        page = client.get("/login", headers=UA).get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        return {"identifier": licences[0], "password": demo.DEMO_PASSWORD, "csrf_token": token}

    login = Target("login POST (argon2 included)", [(app.test_client(), "/login", lambda body: True)], "POST",
                   login_form)
    found = rounds([espace, cold, login], baseline, args.rounds, {login.name: 10}, args.requests)
    stored = Member.get(Member.licence_number == licences[0]).password_hash
    started = time.process_time()
    for _ in range(10):
        assert passwords.verify_password(stored, demo.DEMO_PASSWORD)
    alone = (time.process_time() - started) / 10 * 1000  # the deliberate cost of a password check
    found["argon2 verify alone (part of the login POST)"] = [(alone, found[login.name][-1][1])]
    # No "login without argon2" row: argon2 is 98 % of the POST, and the difference of two noisy figures of
    # ~300 ms came out negative in a quiet run. The login's own cost is argon2's, by design.
    report("In-process, demo federation", found)
    return clients, baseline


def under_load(args: argparse.Namespace, env: dict[str, str], clients: list[Any], plain: Any,
               licences: list[str]) -> None:
    ids = member_ids(licences)
    cookies_portal = [f"session={c.get_cookie('session').value}" for c in clients]
    plain_cookie_clients = [client for client, _, _ in plain_clients(plain, ids)]
    cookies_plain = [f"session={c.get_cookie('session').value}" for c in plain_cookie_clients]
    portal_server = portal_load.Server("portal.wsgi:app", env)
    plain_server = portal_load.Server("bench.plain_page:app", env)
    print(f"\nUnder gunicorn (2 sync workers), wrk: 50 connections, {args.duration} s per page and round, "
          f"{len(clients)} members' sessions rotating")
    print("| round | page | requests/s | p50 ms | p99 ms | not 2xx | errors | server CPU ms/request | load avg |")
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for number in range(1, args.rounds + 1):
            for name, server, path, cookies in (("plain page", plain_server, "/plain/", cookies_plain),
                                                ("Mon espace", portal_server, "/espace/", cookies_portal)):
                got = portal_load.run_wrk(server, path, cookies, seconds=args.duration)
                print(f"| {number} | {name} | {got.rps:.0f} | {got.p50_ms:.1f} | {got.p99_ms:.1f} | {got.not_2xx} "
                      f"| {got.errors} | {got.cpu_ms_per_request:.2f} | {os.getloadavg()[0]:.1f} |")
    finally:
        portal_server.stop()
        plain_server.stop()


def staff_pages(app: Any, baseline: Target, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    lists = portal_data.big_lists(args.lists)
    message_ids = portal_data.messages(lists, big=2, small=48, recipients=args.deliveries)
    portal_data.audit_events(args.events)
    print(f"\nstaff data built in {time.perf_counter() - started:.0f} s: {args.lists} lists, 2 messages of "
          f"{args.deliveries:,} deliveries and 48 small ones, {args.events:,} audit events")
    federal, regional = log_in(app, demo.ADMIN_LICENCE), log_in(app, demo.STAFF_LICENCE)
    big = lists[0]
    middle = "m"  # an address key half-way through the alphabet: a page deep in the list
    form = {"criteria-0-structure": "FFESSM", "criteria-0-include_subtree": "y",  # not the list's own (unsaved)
            "criteria-0-require_valid_licence": "y", "criteria-0-structure_kind": "club"}

    page = federal.get(f"/admin/lists/{big.id}/criteria", headers=UA).get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    def preview_data(_client: Any) -> dict[str, str]:  # the page's form, as its script posts it
        return {**form, "csrf_token": token}

    ok: Check = lambda body: "</html>" in body or "preview-count" in body or body.startswith("{")  # noqa: E731
    targets = [
        Target("lists page (200 lists of ~100,000)", [(federal, "/admin/", ok)]),
        Target("recipients page, first", [(federal, f"/admin/lists/{big.id}/recipients", ok)]),
        Target("recipients page, middle", [(federal, f"/admin/lists/{big.id}/recipients?after={middle}", ok)]),
        Target("criteria page (GET)", [(federal, f"/admin/lists/{big.id}/criteria", ok)]),
        Target("criteria preview (POST, at once)", [(federal, f"/admin/lists/{big.id}/criteria/preview", ok)],
               "POST", preview_data),
        Target("criteria exact count (POST, ~100,000)", [(federal, f"/admin/lists/{big.id}/criteria/exact", ok)],
               "POST", preview_data),
        Target("messages page", [(federal, "/admin/messages/", ok)]),
        Target("a message of 100,000 deliveries", [(federal, f"/admin/messages/{message_ids[0]}", ok)]),
        Target("its progress.json", [(federal, f"/admin/messages/{message_ids[0]}/progress.json", ok)]),
        Target("audit journal, first page", [(federal, "/admin/audit", ok)]),
        Target("audit journal, regional staff", [(regional, "/admin/audit", ok)]),
        Target("Mon espace with the 200 lists", [(federal, "/espace/", ok)]),
    ]
    slow = {"criteria exact count (POST, ~100,000)": 3}
    if args.profile_staff:
        profile_targets(targets, Path(args.profile_staff), slow)
    found = rounds(targets, baseline, args.rounds, slow, max(args.requests // 5, 20))
    report(f"In-process, staff pages at {args.members:,} members", found)


def profile_targets(targets: list[Target], folder: Path, slow: dict[str, int]) -> None:
    """One profile per staff page (60 requests each, fewer for slow ones), written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, target in enumerate(targets):
        target.once()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(slow.get(target.name, 60)):
            target.once()
        profiler.disable()
        with open(folder / f"{number:02d}.txt", "w") as out:
            out.write(f"{target.name}\n")
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(60)
            stats.sort_stats("tottime").print_stats(40)
    print(f"\nprofiles of the staff pages written to {folder}")


def profile(app: Any, clients: list[Any]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for client in clients * 3:
        client.get("/espace/", headers=UA)
    profiler.disable()
    print("\nProfile of Mon espace (300 requests), by cumulative time:")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--lists", type=int, default=200)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="requests per page and round, in-process")
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per page and round")
    parser.add_argument("--no-load", action="store_true", help="skip the gunicorn + wrk part")
    parser.add_argument("--no-staff", action="store_true", help="skip the staff pages")
    parser.add_argument("--profile", action="store_true", help="print a profile of Mon espace")
    parser.add_argument("--profile-staff", metavar="FOLDER", help="write a profile of each staff page there")
    parser.add_argument("--postgresql", action="store_true", help="run on a private PostgreSQL cluster")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (a fresh database for the run)")
    args = parser.parse_args()
    with postgres.server(args.database_url, args.postgresql) as server:
        if server is None:
            run(args, "")
        else:
            DATABASE_SERVER.extend(server.pids)
            if not server.pids:
                print("the database server's CPU is not counted (not our cluster): in-process CPU only")
            with server.fresh_database("palanquee_portal") as url:
                run(args, url)


def run(args: argparse.Namespace, database_url: str) -> None:
    """The whole benchmark on ``database_url`` (a new SQLite file when empty)."""
    folder = Path(tempfile.mkdtemp(prefix="palanquee-bench-portal-"))
    url = database_url or f"sqlite:///{folder / 'portal.sqlite3'}"
    env = {"PALANQUEE_INSTANCE": str(folder), "PALANQUEE_DATABASE_URL": url, "PALANQUEE_SECRET_KEY": SECRET}
    settings: Settings = load_settings(environ=env)
    database = engine_db.bind(engine_db.make_database(url))
    database.connect()
    engine_db.upgrade(database)
    started = time.perf_counter()
    demo.build(settings, members=args.members)
    licences = portal_data.give_passwords(100)
    database.close()
    print(f"machine: {os.cpu_count()} cores; {args.members:,} members built in {time.perf_counter() - started:.0f} s "
          f"on {'PostgreSQL' if database_url else 'SQLite'}; load average {os.getloadavg()}")
    app = create_app(settings)
    plain = create_plain_app(settings)
    try:
        clients, baseline = member_space(app, plain, licences, args)
        if args.profile:
            profile(app, clients)
        if not args.no_load and shutil.which("wrk"):
            under_load(args, env, clients, plain, licences)
        if not args.no_staff:
            staff_pages(app, baseline, args)
    finally:
        engine_db.release(engine_db.database.obj)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
