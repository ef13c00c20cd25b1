"""``GET /healthz``: whether this installation handles mail, for load balancers and monitoring.

Public and cheap: no session, no template, one query. 200 when the database answers and an engine
process wrote its heartbeat within ``PALANQUEE_HEARTBEAT_MAX_AGE``; 503 otherwise, with the reason.
The answer is JSON and never cached; database errors are logged, not shown (the endpoint is public).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from engine import clock, heartbeat
from engine import db as engine_db
from engine.config import Settings

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
ENDPOINT = "health.healthz"  # the app connects to the database itself for every other endpoint


@bp.get("/healthz")
def healthz() -> Response:
    settings: Settings = current_app.extensions["palanquee.settings"]
    database = engine_db.database.obj
    try:
        database.connect(reuse_if_open=True)
        found = heartbeat.liveness(settings.heartbeat_max_age)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the answer
        log.warning("healthz: the database cannot be read: %s", " ".join(str(exc).split())[:300])
        engine_db.discard_connection(database)
        return _answer(503, "database unreachable", database="unreachable")
    figures = {"database": "ok", "engines_alive": found.alive,
               "last_heartbeat_seconds_ago": round((clock.now() - found.latest).total_seconds(), 1)
               if found.latest else None}
    if not found.alive:
        age = _words(settings.heartbeat_max_age.total_seconds())
        return _answer(503, f"no engine heartbeat within {age}", **figures)
    return _answer(200, "", **figures)


def _words(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _answer(status: int, reason: str, **figures: object) -> Response:
    body = {"status": "ok" if status == 200 else "unavailable", **({"reason": reason} if reason else {}), **figures}
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
