"""Logging of the engine's processes: readable lines, or one JSON object per line for a log collector.

``PALANQUEE_LOG_FORMAT=json`` writes each event as one line: ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``msg`` (the event in words), the ids the call site passed with ``extra=`` (``message_id``,
``delivery_id``, ``list_id``…), ``engine`` (the process's name) and, for errors, ``exception`` (the
traceback as one string). Call sites pass ids with ``extra={"message_id": …}``; never ``message``,
which the logging module reserves.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
# What every LogRecord carries: the rest of its attributes came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped by JSON)."""

    def __init__(self, engine: str = "") -> None:
        super().__init__()
        self.engine = engine

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.engine:
            data["engine"] = self.engine
        data.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False, default=str)


def configure(log_format: str, engine: str = "", stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record of this process to ``stream`` (standard error) in ``log_format``
    (``text`` or ``json``), at INFO; aiosmtpd's per-command chatter stays out. Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(engine) if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO
    return handler
