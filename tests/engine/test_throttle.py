"""Issue 15: per-destination throttling, through a running engine and a sink that behaves like providers
(sessions counted per domain, 421 above a limit, greylisting), with the fake clock where time matters."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from engine import clock
from engine.config import Settings
from engine.outbound import mx, presets, throttle
from engine.outbound.models import Delivery, DeliveryState, ThrottleRule, ThrottleState
from engine.posting.models import Message, MessageState
from tests import factories
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support.sink import Sink

START = datetime(2026, 12, 1, 9, 0)


def _members(federation: Federation, domain: str, count: int) -> list[str]:
    role = factories.role("membre_cd")
    addresses = [f"plongeur{n}@{domain}" for n in range(count)]
    for n, address in enumerate(addresses):
        factories.mandate(factories.member("Plongeur", f"{domain}{n}", email=address, club=federation.club),
                          role, federation.region)
    return addresses


def _rule(name: str, **limits: int | None) -> None:
    ThrottleRule.update(**{"per_minute": None, "per_hour": None, "per_day": None, "connections": None,
                           "per_connection": None, **limits}).where(ThrottleRule.name == name).execute()


def _one_process(settings: Settings) -> Settings:
    return dataclasses.replace(settings, delivery_processes=1, delivery_connections=4)


def _settled() -> bool:
    return not Delivery.select().where(Delivery.claimed_by.is_null(False)).exists()


def _done() -> bool:
    return Message.select().where(Message.state == MessageState.DONE).count() == 1


def _all_handled() -> bool:
    """No copy left to send (the message is marked done later, by the jobs loop on its own real-time beat)."""
    return not Delivery.select().where(Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.DEFERRED])).exists()


def test_issue_15_the_presets_are_the_rules_of_a_new_database(db) -> None:  # type: ignore[no-untyped-def]
    stored = {rule.name: rule for rule in ThrottleRule.select()}
    assert sorted(stored) == sorted(preset.name for preset in presets.PRESETS)
    for preset in presets.PRESETS:
        rule = stored[preset.name]
        assert (rule.label, tuple(rule.domain_list), tuple(rule.mx_list), rule.per_minute, rule.per_hour,
                rule.per_day, rule.connections, rule.per_connection) == (
            preset.label, preset.domains, preset.mx_patterns, preset.per_minute, preset.per_hour, preset.per_day,
            preset.connections, preset.per_connection)
    assert len(stored["sfr"].domain_list) == 24 and "wanadoo.fr" in stored["orange"].domain_list


def test_issue_15_a_provider_gets_no_more_sessions_nor_copies_per_session_than_its_rule(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    orange = _members(federation, "orange.fr", 12) + _members(federation, "wanadoo.fr", 6)
    others = _members(federation, "example.net", 6)
    _rule("orange", connections=2, per_connection=5)
    sink.handler.domain_limit = {"orange.fr": 2, "wanadoo.fr": 2}
    engine = start_engine(_one_process(engine_settings))
    send(engine, post())
    wait_until(_done, timeout=60, what="message done")
    assert sink.handler.refusals == []
    received = sink.handler.by_recipient()
    assert all(len(received[address]) == 1 for address in orange + others)
    assert max(sink.handler.max_domain_sessions["orange.fr"], sink.handler.max_domain_sessions["wanadoo.fr"]) <= 2
    assert sink.handler.max_per_session["orange.fr"] <= 5  # then a new session
    assert {(d.state, d.attempts) for d in Delivery.select()} == {(DeliveryState.SENT, 1)}


def test_issue_15_a_large_list_to_one_provider_is_paced_and_the_others_go_at_once(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    orange = _members(federation, "orange.fr", 30)
    others = _members(federation, "example.net", 10)
    _rule("orange", per_minute=60)  # one a second (two at first: the credit of a second's slots)
    with clock.frozen(START) as advance:
        engine = start_engine(_one_process(engine_settings))
        send(engine, post())
        wait_until(lambda: len(sink.handler.received) == len(others) + 2 + 2, what="the first wave")
        wait_until(_settled, what="the first wave recorded")
        received = sink.handler.by_recipient()
        assert set(others) <= set(received) and len(set(orange) & set(received)) == 2
        queued = list(Delivery.select().where(Delivery.state == DeliveryState.QUEUED))
        assert len(queued) == 28 and {d.attempts for d in queued} == {0}  # put off by the pace: not an attempt
        waiting = sorted(d.next_attempt_at for d in queued)
        assert waiting == [START + timedelta(seconds=n) for n in range(1, 29)]  # one slot a second each
        for n in range(1, 29):
            advance(timedelta(seconds=1))
            wait_until(lambda n=n: len(set(orange) & set(sink.handler.by_recipient())) == 2 + n, what=f"slot {n}")
        wait_until(_done, timeout=30, what="message done")
    assert all(len(copies) == 1 for copies in sink.handler.by_recipient().values())
    assert {(d.state, d.attempts) for d in Delivery.select()} == {(DeliveryState.SENT, 1)}


def test_issue_15_a_slow_down_halves_the_group_rate_and_puts_its_copies_off(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    orange = _members(federation, "orange.fr", 20)
    _rule("orange", per_minute=600)  # ten a second, bursts of ten
    first = orange[0]
    sink.handler.script = lambda address, attempt: (
        "421 4.7.0 Too many messages, slow down" if address == first and attempt == 1 else "250 OK")
    with clock.frozen(START) as advance:
        engine = start_engine(_one_process(engine_settings))
        send(engine, post())
        wait_until(lambda: _state("orange").slowdowns == 1 and Delivery.get(Delivery.address == first).state
                   == DeliveryState.DEFERRED, what="the slow-down recorded")
        wait_until(_settled, what="settled")
        assert _state("orange").factor == 0.5
        put_off = list(Delivery.select().where(Delivery.address.in_(orange), Delivery.state == DeliveryState.QUEUED))
        assert put_off and all(d.attempts == 0 and d.next_attempt_at > START for d in put_off)
        advance(timedelta(minutes=2))
        _run_clock(advance, timedelta(seconds=1), _all_handled)
        wait_until(_done, timeout=30, what="message done")
        assert 0.6 <= _state("orange").factor < 0.7  # recovering: +5 % of the rate a minute
    assert Delivery.get(Delivery.address == first).attempts == 2
    assert all(len(copies) == 1 for copies in sink.handler.by_recipient().values())


def _run_clock(advance, step: timedelta, until) -> None:  # type: ignore[no-untyped-def]
    """Move the frozen clock by ``step`` each time the engine has handled everything due, until ``until``."""
    for _ in range(300):
        wait_until(lambda: not Delivery.select().where(
            Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.DEFERRED])
            & ((Delivery.next_attempt_at <= clock.now()) | Delivery.claimed_by.is_null(False))).exists(),
            what="the engine handling what is due")
        if until():
            return
        advance(step)
    raise AssertionError("never reached")


def _state(key: str) -> ThrottleState:
    return ThrottleState.get_or_none(ThrottleState.key == key) or ThrottleState(slowdowns=0, factor=1.0)


def test_issue_15_greylisting_is_retried_after_five_to_fifteen_minutes_without_slowing_down(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings) -> None:
    orange = _members(federation, "orange.fr", 3)
    _rule("orange", per_minute=600)
    settings = dataclasses.replace(_one_process(engine_settings), retry_first=timedelta(minutes=5),
                                   retry_max=timedelta(hours=1), retry_lifetime=timedelta(days=5))
    sink.handler.script = lambda address, attempt: (
        "451 4.7.1 Greylisted, please try again later" if attempt == 1 else "250 OK")
    with clock.frozen(START) as advance:
        engine = start_engine(settings)
        send(engine, post())
        wait_until(lambda: Delivery.select().where(Delivery.state == DeliveryState.DEFERRED).count() == 5
                   and _settled(), what="every copy greylisted")
        for row in Delivery.select():
            assert row.attempts == 1 and row.last_reply.startswith("451 4.7.1 Greylisted")
            assert timedelta(minutes=5) <= row.next_attempt_at - START <= timedelta(minutes=15)
        assert _state("orange").slowdowns == 0  # greylisting wants a later retry, not a slower pace
        advance(timedelta(minutes=16))
        _run_clock(advance, timedelta(seconds=1), _all_handled)
        wait_until(_done, timeout=30, what="message done")
    assert {(d.state, d.attempts) for d in Delivery.select()} == {(DeliveryState.SENT, 2)}
    assert len(sink.handler.received) == 3 + 2 and all(a in sink.handler.by_recipient() for a in orange)


def test_issue_15_retry_schedule_grows_to_an_hour_and_gives_up_after_the_lifetime() -> None:
    from engine.outbound.outbox import retry_after

    first, longest = timedelta(minutes=5), timedelta(hours=1)
    low = [retry_after(n, first, longest, spread=0.0) for n in range(1, 8)]
    high = [retry_after(n, first, longest, spread=0.999) for n in range(1, 8)]
    assert [d.total_seconds() / 60 for d in low] == [5, 10, 20, 40, 60, 60, 60]
    assert timedelta(minutes=5) <= high[0] <= timedelta(minutes=15) and high[-1] <= timedelta(minutes=75)
    total, attempts = timedelta(0), 0
    while total <= timedelta(days=5):
        attempts += 1
        total += retry_after(attempts, first, longest, spread=0.5)
    assert 100 <= attempts <= 115  # about an hour (and a bit) apart for five days


def test_issue_15_aimd_arithmetic(db) -> None:  # type: ignore[no-untyped-def]
    group = throttle.Group("orange", "orange", per_minute=600)
    [state] = throttle._locked_states(["orange"], START).values()
    granted, later = throttle.admit_one(state, group, 25, START)
    assert granted == 11 and len(later) == 14  # a second's worth of credit, then one every 0.1 s
    assert later[0] == START + timedelta(seconds=0.1) and later[1] - later[0] == timedelta(seconds=0.1)
    for slot in later:  # each put-off copy is claimed a little after its slot: the credit absorbs it
        assert throttle.admit_one(state, group, 1, slot + timedelta(seconds=0.35)) == (1, [])
    times = throttle.slow_one(state, group, 5, START)
    assert state.factor == 0.5 and times[1] - times[0] == timedelta(seconds=0.2)  # half the rate
    throttle.slow_one(state, group, 0, START + timedelta(seconds=10))
    assert state.factor == pytest.approx(0.5 + 0.05 / 6) and state.slowdowns == 1  # a burst of refusals halves once
    throttle.slow_one(state, group, 0, START + timedelta(seconds=40))
    assert state.factor == pytest.approx((0.5 + 0.05 * 40 / 60) / 2) and state.slowdowns == 2
    throttle.admit_one(state, group, 1, START + timedelta(seconds=40, minutes=5))
    assert state.factor == pytest.approx((0.5 + 0.05 * 40 / 60) / 2 + 0.25)  # +5 % of the rate a minute
    throttle.admit_one(state, group, 1, START + timedelta(minutes=30))
    assert state.factor == 1.0


def test_issue_15_an_internationalised_domain_is_looked_up_and_grouped_by_its_a_label(db, dns) -> None:  # type: ignore[no-untyped-def]
    """DELIVERABILITY.md §3.2: MX lookups ask for the A-label (RFC 5891); a rule naming either form holds."""
    dns.add("xn--plonge-13-f4a.fr", "MX", ["20 mx2.example.net", "10 ASPMX.L.GOOGLE.COM."])
    cache = mx.MxCache(workers=1)
    try:
        assert cache.host("Plongée-13.fr") is None  # asked in the background
        wait_until(lambda: cache.host("Plongée-13.fr") is not None, what="the MX answer")
        assert cache.host("Plongée-13.fr") == "aspmx.l.google.com"
    finally:
        cache.pool.shutdown(wait=True)
    assert ("xn--plonge-13-f4a.fr", "MX") in dns.queries and not any("é" in name for name, _ in dns.queries)
    assert mx.resolve("exa\u2603mple.fr") is None  # no A-label exists: no lookup, no MX
    hosts = {"xn--plonge-13-f4a.fr": "aspmx.l.google.com"}
    rules = throttle.load_rules(hosts.get)
    assert rules.group("jerome@Plongée-13.FR").key == "gmail"
    assert rules.group("jerome@plongée-13.fr") is rules.group("bob@xn--plonge-13-f4a.fr")
    ThrottleRule.update(domains="orange.fr\nclubs-plongée.fr").where(ThrottleRule.name == "orange").execute()
    assert throttle.load_rules().group("x@xn--clubs-plonge-leb.fr").key == "orange"  # a rule in U-labels holds


def test_issue_15_a_domain_follows_its_rule_by_name_then_by_mx_host_else_the_default(db) -> None:  # type: ignore[no-untyped-def]
    hosts = {"club-cassis.fr": "aspmx.l.google.com.", "mairie.example": "mx.example.net"}
    rules = throttle.load_rules(hosts.get)
    assert rules.group("Jean@Wanadoo.FR").key == "orange"
    assert rules.group("president@club-cassis.fr").key == "gmail"  # hosted by Google: its MX says so
    assert rules.group("contact@mairie.example") is throttle.UNLIMITED  # the default rule has no limit
    _rule("default", per_minute=120)
    limited = throttle.load_rules(hosts.get).group("contact@mairie.example")
    assert (limited.key, limited.per_minute) == ("default:mairie.example", 120)  # each domain on its own
    assert throttle.is_slow_down(421, "4.7.0 Try again later") and throttle.is_slow_down(450, "4.7.1 Rate limited")
    assert not throttle.is_slow_down(451, "4.7.1 Greylisted, see http://postgrey") and not throttle.is_slow_down(
        452, "4.2.2 Mailbox full")


@pytest.mark.parametrize(("limit", "window"), [("per_hour", timedelta(hours=1)), ("per_day", timedelta(days=1))])
def test_issue_15_an_hourly_or_daily_maximum_sends_no_more_and_puts_the_rest_off_to_the_next_window(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings, limit: str,
        window: timedelta) -> None:
    orange = _members(federation, "orange.fr", 5)
    others = _members(federation, "example.net", 3)
    _rule("orange", **{limit: 3})
    with clock.frozen(START) as advance:
        engine = start_engine(_one_process(engine_settings))
        send(engine, post())
        wait_until(lambda: len(sink.handler.received) == len(others) + 2 + 3, what="the first wave")
        wait_until(_settled, what="the first wave recorded")
        assert set(others) <= set(sink.handler.by_recipient())  # the other providers are not held back
        assert len(set(orange) & set(sink.handler.by_recipient())) == 3
        put_off = list(Delivery.select().where(Delivery.address.in_(orange), Delivery.state == DeliveryState.QUEUED))
        assert len(put_off) == 2 and {(d.attempts, d.next_attempt_at) for d in put_off} == {(0, START + window)}
        assert (_state("orange").hour_count, _state("orange").day_count) == (3, 3)
        advance(window - timedelta(seconds=1))  # the window still holds: nothing is due, nothing more goes
        wait_until(_settled, what="settled")
        assert len(set(orange) & set(sink.handler.by_recipient())) == 3
        advance(timedelta(seconds=1))
        wait_until(lambda: set(orange) <= set(sink.handler.by_recipient()), what="the rest in the next window")
        wait_until(_done, timeout=30, what="message done")
    assert all(len(copies) == 1 for copies in sink.handler.by_recipient().values())
    assert {(d.state, d.attempts) for d in Delivery.select()} == {(DeliveryState.SENT, 1)}


@pytest.mark.parametrize(("name", "hourly"), [("orange", 1500), ("sfr", 1500), ("laposte", 1500), ("outlook", 1200)])
def test_issue_15_the_presets_hourly_quotas_hold_across_batches_and_engines(db, name: str, hourly: int) -> None:  # type: ignore[no-untyped-def]
    domain = {preset.name: preset for preset in presets.PRESETS}[name].domains[0]
    group = throttle.load_rules().group(f"x@{domain}")
    assert (group.key, group.per_hour) == (name, hourly)
    moment, sent = START, 0
    while moment < START + timedelta(minutes=59):  # a batch claimed every ten seconds, the pace allowing
        sent += throttle.admit({name: (group, 100)}, moment)[name][0]
        moment += timedelta(seconds=10)
    assert sent == hourly  # the per-minute pace would allow 3,540 in those 59 minutes: the quota stops it
    granted, later = throttle.admit({name: (group, 10)}, moment)[name]
    assert granted == 0 and later[0] >= START + timedelta(hours=1)  # nothing before the hour reopens
    granted, _ = throttle.admit({name: (group, 10)}, START + timedelta(hours=1, seconds=1))[name]
    assert granted > 0
