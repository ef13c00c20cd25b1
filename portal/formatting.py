"""Dates for people: French by default ("26 novembre 2026 à 14 h 00"), English when asked for."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask_babel import format_date as babel_format_date
from flask_babel import get_locale, to_user_timezone

from engine.clock import to_local


def format_date(value: date | None) -> str:
    if value is None:
        return ""
    return str(babel_format_date(value, "long"))


def format_datetime(value: datetime | None) -> str:
    """A stored naive-UTC time in the user's time zone, in the user's language."""
    if value is None:
        return ""
    local = to_user_timezone(to_local(value, _utc()))
    day = babel_format_date(local.date(), "long")
    if str(get_locale()).startswith("fr"):
        return f"{day} à {local.hour} h {local.minute:02d}"
    return f"{day} at {local.strftime('%H:%M')}"


def _utc():  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    return ZoneInfo("UTC")


def format_duration(value: timedelta) -> str:
    """A delay in words in the user's language ("3 jours", "15 minutes")."""
    from engine.directory.wording import duration_words

    return duration_words(value, "en" if str(get_locale()).startswith("en") else "fr")
