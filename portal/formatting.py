"""Dates for people: French by default ("26 novembre 2026 à 14 h 00"), English when asked for
("26 November 2026 at 14:00", British order: the federation's English readers are European)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache

from babel.dates import format_date as babel_format_date
from flask_babel import get_locale, get_timezone

from engine.directory.wording import duration_words, moment_words


def _language() -> str:
    return "en" if str(get_locale()).startswith("en") else "fr"


def format_date(value: date | None) -> str:
    if value is None:
        return ""
    return _long_date(value, "en_GB" if _language() == "en" else "fr_FR")


@lru_cache(maxsize=4096)
def _long_date(value: date, locale: str) -> str:
    return str(babel_format_date(value, "long", locale=locale))  # babel costs about 0.1 ms a call: kept


def format_datetime(value: datetime | None) -> str:
    """A stored naive-UTC time in the user's time zone, in the user's language."""
    if value is None:
        return ""
    return _moment(value, get_timezone(), _language())


_moment = lru_cache(maxsize=4096)(moment_words)


def format_duration(value: timedelta) -> str:
    """A delay in words in the user's language ("3 jours", "15 minutes")."""
    return duration_words(value, _language())


def format_mail_date(value: object) -> str:
    """A mail's Date header (RFC 5322 §3.3, any zone) in the federation's time zone and the user's language;
    a header that does not parse is shown as it is."""
    text = str(value or "").strip()
    if not text:
        return ""
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return text
    if moment.tzinfo is None:  # RFC 5322 "-0000": no zone information, read as UTC
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC).replace(tzinfo=None))
