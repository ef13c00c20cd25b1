"""Issue 15: grouping by MX host. With ``PALANQUEE_THROTTLE_MX_LOOKUP`` on, a domain no rule names but whose
mail a provider receives (its MX) follows that provider's rule; lookups go through the engine's replaceable
resolver, once per domain a day, and a DNS failure leaves the domain on the default rule."""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from engine import clock
from engine import db as engine_db
from engine.config import Settings
from engine.outbound import mx, pacer, throttle
from engine.outbound.models import ThrottleRule
from engine.outbound.outbox import Claimed
from engine.resolver import StaticResolver, TemporaryDnsError
from tests.engine.conftest import wait_until

START = datetime(2026, 12, 1, 9, 0)
HOSTED = {  # domain: its MX records, as the test's DNS answers them
    "club-cassis.fr": ["20 backup.club-cassis.fr.", "10 club-cassis-fr.mail.protection.outlook.com."],
    "asso-plongee.fr": ["10 smtp-in.orange.fr."],
    "mairie.example": ["10 mx1.mairie.example."],
    "nulle.example": ["0 ."],  # RFC 7505: no mail at all
}


@pytest.fixture
def zone(dns: StaticResolver) -> StaticResolver:
    for domain, records in HOSTED.items():
        dns.add(domain, "MX", records)
    dns.add("panne.example", "MX", TimeoutError("SERVFAIL"))  # type: ignore[arg-type]
    return dns


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _in_db(function: Any, *args: Any) -> Any:
    return function(*args)


def _run(coroutine: Any) -> Any:
    """Run ``coroutine`` on a loop of its own in another thread: after the browser tests, Playwright's loop is
    still running in the main thread, where ``asyncio.run`` refuses to start (the whole suite in one process)."""
    def call() -> Any:
        try:
            return asyncio.run(coroutine)
        finally:
            engine_db.database.close()  # the thread's pooled connection goes back before the thread ends

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def _admit(pace: pacer.Pacer, *addresses: str) -> dict[str, tuple[str, bool]]:
    """Each address's group key and whether it may go now (the delivery worker's call)."""
    items = [Claimed(n, 1, address, "", "", 1) for n, address in enumerate(addresses)]
    groups, later = _run(pace.admit(items))
    put_off = {id_ for id_, _ in later}
    rules = _run(pace.rules())
    return {item.address: (rules.group(item.address).key, item.id not in put_off) for item in items}


def _mx_queries(dns: StaticResolver, domain: str) -> int:
    return dns.queries.count((domain, "MX"))


def test_resolve_asks_the_engines_resolver_for_the_best_mx(zone: StaticResolver) -> None:
    assert mx.resolve("club-cassis.fr") == "club-cassis-fr.mail.protection.outlook.com"  # lowest preference
    assert mx.resolve("Asso-Plongee.FR.") == "smtp-in.orange.fr"
    assert mx.resolve("nulle.example") is None and mx.resolve("inconnu.example") is None
    with pytest.raises(TemporaryDnsError):
        mx.resolve("panne.example")
    assert ("club-cassis.fr", "MX") in zone.queries  # the replaced resolver answered: no network


def test_a_domain_hosted_by_a_provider_follows_its_rule_once_its_mx_is_known(db, zone: StaticResolver,  # type: ignore[no-untyped-def]
                                                                            settings: Settings) -> None:
    ThrottleRule.update(per_minute=None, per_hour=2, per_day=None).where(ThrottleRule.name == "outlook").execute()
    ticks = Monotonic()
    pace = pacer.Pacer(dataclasses.replace(settings, throttle_mx_lookup=True), _in_db, monotonic=ticks)
    assert pace.mx is not None
    domains = ["club-cassis.fr", "asso-plongee.fr", "mairie.example", "panne.example"]
    with clock.frozen(START):
        first = _admit(pace, *(f"a@{domain}" for domain in domains))
        assert {key for key, _ in first.values()} == {""}  # not known yet: the default rule, no waiting on DNS
        wait_until(lambda: set(domains) <= set(pace.mx.known), what="the MX lookups")  # type: ignore[union-attr]
        ticks.now += pacer.RULES_TTL + 1  # the rules are reloaded with what the lookups found
        second = _admit(pace, "b@club-cassis.fr", "c@club-cassis.fr", "d@club-cassis.fr", "b@asso-plongee.fr",
                        "b@mairie.example", "b@panne.example")
    assert second == {"b@club-cassis.fr": ("outlook", True), "c@club-cassis.fr": ("outlook", True),
                      "d@club-cassis.fr": ("outlook", False),  # Outlook's hourly maximum, 2 here
                      "b@asso-plongee.fr": ("orange", True),
                      "b@mairie.example": ("", True),  # an MX no rule names: the default rule
                      "b@panne.example": ("", True)}  # a DNS failure: the default rule
    assert all(_mx_queries(zone, domain) == 1 for domain in domains)  # one lookup per domain, cached
    pace.mx.close()


def test_lookups_are_cached_a_day_and_failures_an_hour(db, zone: StaticResolver, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    ticks = Monotonic()
    cache = mx.MxCache(monotonic=ticks)
    try:
        for domain in ("club-cassis.fr", "panne.example"):
            cache.host(domain)
        wait_until(lambda: {"club-cassis.fr", "panne.example"} <= set(cache.known), what="the lookups")
        for _ in range(100):
            assert cache.host("club-cassis.fr") == "club-cassis-fr.mail.protection.outlook.com"
            assert cache.host("panne.example") is None
        assert (_mx_queries(zone, "club-cassis.fr"), _mx_queries(zone, "panne.example")) == (1, 1)
        ticks.now += mx.FAILED_LIFETIME + 1  # a failed lookup is tried again after an hour
        cache.host("club-cassis.fr"), cache.host("panne.example")
        wait_until(lambda: _mx_queries(zone, "panne.example") == 2, what="the failed lookup again")
        assert _mx_queries(zone, "club-cassis.fr") == 1
        zone.add("club-cassis.fr", "MX", ["10 aspmx.l.google.com."])  # the club moved to Google
        ticks.now += mx.LIFETIME  # a day later: looked up again; the old host serves meanwhile
        assert cache.host("club-cassis.fr") == "club-cassis-fr.mail.protection.outlook.com"
        wait_until(lambda: cache.host("club-cassis.fr") == "aspmx.l.google.com", what="the new MX")
        assert _mx_queries(zone, "club-cassis.fr") == 2
    finally:
        cache.close()


def test_without_the_setting_no_mx_is_looked_up(db, zone: StaticResolver, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    pace = pacer.Pacer(dataclasses.replace(settings, throttle_mx_lookup=False), _in_db)
    assert pace.mx is None
    with clock.frozen(START):
        assert _admit(pace, "a@club-cassis.fr") == {"a@club-cassis.fr": ("", True)}
    assert zone.queries == []
    assert throttle.load_rules().group("a@hotmail.fr").key == "outlook"  # by name, it needs no DNS
