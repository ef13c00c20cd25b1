"""Durations and moments in words for the mail the member space sends ("3 jours", "26 novembre 2026 à 14 h 00").

The portal formats pages with Flask-Babel (portal/formatting.py); mail is rendered without Flask, so the
engine formats with Babel directly, in the recipient's language and the federation's time zone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_date

from engine.clock import to_local

_UNITS = {
    "fr": (("jour", "jours"), ("heure", "heures"), ("minute", "minutes")),
    "en": (("day", "days"), ("hour", "hours"), ("minute", "minutes")),
}


def duration_words(delta: timedelta, language: str | None) -> str:
    """The largest whole unit that states ``delta`` exactly or roughly: ``3 jours``, ``72 hours`` → ``3 days``."""
    days, hours, minutes = _UNITS["en" if language == "en" else "fr"]
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0 minute" if language != "en" else "0 minutes"
    for size, (one, many) in ((86400, days), (3600, hours), (60, minutes)):
        if seconds >= size and (seconds % size == 0 or size == 60):
            count = seconds // size
            return f"{count} {one if count == 1 else many}"
    return f"1 {minutes[0]}"


def moment_words(moment: datetime, tz: ZoneInfo, language: str | None) -> str:
    """A stored naive-UTC time, local: ``26 novembre 2026 à 14 h 00`` / ``26 November 2026 at 14:00``."""
    local = to_local(moment, tz)
    if language == "en":
        return f"{format_date(local.date(), 'long', locale='en_GB')} at {local:%H:%M}"
    return f"{format_date(local.date(), 'long', locale='fr_FR')} à {local.hour} h {local.minute:02d}"
