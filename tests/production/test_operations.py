"""What operators watch (issue 16): ``/healthz``, the engines' heartbeats, Prometheus metrics, JSON logs."""

from __future__ import annotations

import dataclasses
import json
import logging
import smtplib
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import clock, heartbeat, logs
from engine import db as engine_db
from engine.config import Settings
from engine.heartbeat import EngineHeartbeat
from engine.lists.models import OptOut
from engine.metrics import QueueCollector
from engine.outbound.models import Delivery, DeliveryState
from engine.posting.models import Message, MessageState
from portal import create_app
from tests.engine.conftest import Federation, wait_until
from tests.engine.test_engine_e2e import post, send
from tests.support import engines
from tests.support.sink import Sink, reserve

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def scrape(engine) -> Samples:  # type: ignore[no-untyped-def]
    import urllib.request

    host, port = engine.bound["metrics"]
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as answer:
        return samples(answer.read().decode())


# --- /healthz and heartbeats ---

def test_healthz_answers_503_without_a_recent_heartbeat_and_200_with_one(settings: Settings, db) -> None:
    client = create_app(settings, config={"TESTING": True}).test_client()
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.headers["Cache-Control"] == "no-store"
    assert answer.get_json() == {"status": "unavailable", "reason": "no engine heartbeat within 2 min",
                                 "database": "ok", "engines_alive": 0, "last_heartbeat_seconds_ago": None}
    heartbeat.beat("mx1:41", "engine", clock.now() - timedelta(hours=1), now=clock.now() - timedelta(minutes=3))
    stale = client.get("/healthz").get_json()
    assert stale["engines_alive"] == 0 and stale["last_heartbeat_seconds_ago"] >= 180
    heartbeat.beat("mx2:42", "delivery", clock.now())
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.get_json()["status"] == "ok" and answer.get_json()["engines_alive"] == 1
    patient = create_app(dataclasses.replace(settings, heartbeat_max_age=timedelta(minutes=5)),
                         config={"TESTING": True}).test_client()
    assert patient.get("/healthz").get_json()["engines_alive"] == 2  # PALANQUEE_HEARTBEAT_MAX_AGE decides
    assert heartbeat.prune(now=clock.now() + timedelta(days=2)) == 2


def test_healthz_answers_503_when_the_database_is_unreachable_without_saying_where_it_is(settings: Settings,
                                                                                         db) -> None:
    closed = reserve()  # bound, not listening: connections are refused
    away = dataclasses.replace(settings, database_url=f"postgresql://postgres@127.0.0.1:{closed.getsockname()[1]}/x")
    try:
        client = create_app(away, check_schema=False, config={"TESTING": True}).test_client()
        answer = client.get("/healthz")
        assert answer.status_code == 503
        assert answer.get_json() == {"status": "unavailable", "reason": "database unreachable",
                                     "database": "unreachable"}
        assert "127.0.0.1" not in answer.get_data(as_text=True)
    finally:
        closed.close()
        engine_db.bind(db)


def test_an_engine_beats_while_it_runs_and_forgets_its_heartbeat_when_stopped(
        start_engine, settings: Settings, engine_settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    client = create_app(settings, config={"TESTING": True}).test_client()
    engine = start_engine(dataclasses.replace(engine_settings, heartbeat_max_age=timedelta(seconds=1)))
    wait_until(lambda: client.get("/healthz").status_code == 200, what="healthz 200")
    first = EngineHeartbeat.get(EngineHeartbeat.name == engine.name)
    assert first.role == "engine"
    wait_until(lambda: EngineHeartbeat.get(EngineHeartbeat.name == engine.name).seen_at > first.seen_at,
               what="a second beat (every quarter of the maximum age here)")
    engine.stop()
    wait_until(lambda: client.get("/healthz").status_code == 503, what="healthz 503 after the stop")
    assert EngineHeartbeat.select().count() == 0


# --- metrics ---

def test_metrics_count_copies_by_group_and_intake_replies_and_read_the_queue(
        start_engine, federation: Federation, sink: Sink) -> None:  # type: ignore[no-untyped-def]
    engine = start_engine(metrics=("127.0.0.1", 0))
    assert send(engine, post()) == {}
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(engine, post(to="inconnue@listes.example.fr"))
    wait_until(lambda: Message.get().state == MessageState.DONE, what="the post done")
    found = scrape(engine)
    assert value(found, "palanquee_copies_total", group="default", outcome="sent") == 2
    assert value(found, "palanquee_copies_total", group="default", outcome="deferred") is None
    assert value(found, "palanquee_intake_recipients_total", result="accepted") == 1
    assert value(found, "palanquee_intake_recipients_total", result="refused") == 1
    assert value(found, "palanquee_intake_messages_total", result="accepted") == 1
    assert value(found, "palanquee_queue_copies", state="queued") == 0
    assert value(found, "palanquee_engines_alive") == 1 and value(found, "palanquee_database_up") == 1
    assert value(found, "process_cpu_seconds_total") is not None
    assert value(found, "palanquee_optouts_total") == 0
    left = OptOut.create(mailing_list=federation.board_list, member=federation.board[0], created_at=clock.now(),
                         source="footer")
    assert value(scrape(engine), "palanquee_optouts_total") == left.id


def collected(collector: QueueCollector) -> Samples:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for metric in collector.collect() for sample in metric.samples}


def test_metrics_show_deferred_copies_the_send_progress_and_how_late_the_queue_runs(
        start_engine, federation: Federation, sink: Sink, engine_settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    sink.handler.script = lambda address, attempt: "451 4.7.1 Greylisted, try again later"
    engine = start_engine(dataclasses.replace(engine_settings, retry_first=timedelta(hours=1)),
                          metrics=("127.0.0.1", 0))
    send(engine, post())
    wait_until(lambda: Delivery.select().where(Delivery.state == DeliveryState.DEFERRED).count() == 2,
               what="two deferred copies")
    found = scrape(engine)
    message = Message.get()
    labels = {"message_id": str(message.id), "list": "comite_directeur.comite@listes.example.fr"}
    assert value(found, "palanquee_copies_total", group="default", outcome="deferred") == 2
    assert value(found, "palanquee_queue_copies", state="deferred") == 2
    assert value(found, "palanquee_queue_oldest_age_seconds", state="deferred") == 0  # due in an hour
    assert value(found, "palanquee_send_recipients", **labels) == 2
    assert value(found, "palanquee_send_remaining_copies", **labels) == 2
    engine.stop()
    wait_until(lambda: EngineHeartbeat.select().count() == 0, what="the engine stopped")
    Delivery.update(next_attempt_at=clock.now() - timedelta(minutes=10)).execute()  # and nobody took over
    late = collected(QueueCollector(db, timedelta(minutes=2)))
    assert value(late, "palanquee_queue_oldest_age_seconds", state="deferred") >= 600
    assert value(late, "palanquee_engines_alive") == 0


def test_metrics_say_the_database_is_down_instead_of_failing(db) -> None:  # type: ignore[no-untyped-def]
    closed = reserve()
    try:
        broken = engine_db.make_database(f"postgresql://postgres@127.0.0.1:{closed.getsockname()[1]}/x")
        assert collected(QueueCollector(broken, timedelta(minutes=2))) == {("palanquee_database_up", ()): 0}
    finally:
        closed.close()


# --- logs ---

def test_json_log_lines_carry_the_ids_passed_with_extra() -> None:
    formatter = logs.JsonFormatter("mx1:42")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("palanquee.delivery", logging.ERROR, __file__, 1, "delivery %s failed", (7,),
                                   sys.exc_info())
    record.delivery_id, record.message_id = 7, 3
    line = formatter.format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert (data["msg"], data["level"], data["logger"], data["engine"]) == (
        "delivery 7 failed", "error", "palanquee.delivery", "mx1:42")
    assert (data["delivery_id"], data["message_id"]) == (7, 3)
    assert "ValueError: boom" in data["exception"]


def test_an_engine_process_logs_json_lines_and_every_process_beats_and_serves_metrics(
        federation: Federation, sink: Sink, engine_settings: Settings, settings: Settings, tmp_path: Path) -> None:
    sink.handler.script = lambda address, attempt: "451 4.7.1 Greylisted" if attempt == 1 else "250 OK"
    env = engines.environment(engine_settings, LOG_FORMAT="json", METRICS_LISTEN="127.0.0.1:0",
                              DELIVERY_PROCESSES="2", RETRY_FIRST="1s")
    engine = engines.start(env, tmp_path / "engine.log")
    try:
        wait_until(lambda: EngineHeartbeat.select().count() == 2, what="a heartbeat from the engine and its helper")
        assert sorted(row.role for row in EngineHeartbeat.select()) == ["delivery", "engine"]
        assert create_app(settings).test_client().get("/healthz").status_code == 200
        send(engine, post())
        wait_until(lambda: Message.get().state == MessageState.DONE, timeout=60, what="the post done")
        [helper_line] = [json.loads(line)["msg"] for line in engine.text().splitlines() if "(delivery only)" in line]
        helper = engines.EngineProcess(engine.pid, engine.log, bound={
            kind: (host, int(port)) for kind, host, port in engines.ADDRESS.findall(helper_line)})
        assert helper.bound["metrics"] != engine.bound["metrics"]  # a port of its own
        both = [samples(process.metrics()) for process in (engine, helper)]
        for outcome in ("sent", "deferred"):  # each process counts what it recorded
            assert sum(value(found, "palanquee_copies_total", group="default", outcome=outcome) or 0
                       for found in both) == 2
    finally:
        assert engine.terminate() == 0
    lines = [json.loads(line) for line in engine.text().splitlines() if line.strip()]  # every line is JSON
    message_id = Message.get().id
    assert any(line.get("message_id") == message_id and line["logger"] == "palanquee.intake" for line in lines)
    assert any(line.get("message_id") == message_id and line.get("recipients") == 2 for line in lines)
    deferred = [line for line in lines if line.get("outcome") == "deferred"]
    assert {line["delivery_id"] for line in deferred} == {d.id for d in Delivery.select()}
    assert all(line["message_id"] == message_id and line["engine"] for line in deferred)
    assert EngineHeartbeat.select().count() == 0  # both processes said goodbye


def test_recorded_copies_are_counted_under_their_own_group_and_outcome_whatever_the_order() -> None:
    """The counter's labelled children are looked up once per (group, outcome): each result still lands on its own."""
    import peewee

    from engine.metrics import Metrics

    metrics = Metrics(peewee.SqliteDatabase(":memory:"), timedelta(seconds=30))  # the queue's figures are not read
    for group, outcome in [("default", "sent"), ("default", "deferred"), ("default", "sent"), ("orange", "sent"),
                           ("", "failed"), ("orange", "deferred"), ("default", "sent")]:
        metrics.copy_recorded(group, outcome)
    counted = {(sample.labels["group"], sample.labels["outcome"]): sample.value
               for family in metrics.copies.collect() for sample in family.samples if sample.name.endswith("_total")}
    assert counted == {("default", "sent"): 3, ("default", "deferred"): 1, ("orange", "sent"): 1,
                       ("none", "failed"): 1, ("orange", "deferred"): 1}
