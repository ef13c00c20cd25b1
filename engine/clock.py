"""The one source of the current time. Times are naive UTC in the database; tests replace the clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_source: Callable[[], datetime] = lambda: datetime.now(UTC).replace(tzinfo=None)  # noqa: E731


def now() -> datetime:
    """Current time as a naive UTC datetime (the form stored in the database)."""
    return _source()


def today(tz: ZoneInfo) -> date:
    """Today's date where people live (licence validity is a local date)."""
    return to_local(now(), tz).date()


def to_local(moment: datetime, tz: ZoneInfo) -> datetime:
    """A stored naive-UTC time as an aware local time, for display."""
    return moment.replace(tzinfo=UTC).astimezone(tz)


@contextmanager
def frozen(moment: datetime) -> Iterator[Callable[[timedelta], None]]:
    """Freeze ``now()`` at ``moment``; yields ``advance(delta)`` to move it. Tests only."""
    global _source
    current = [moment]
    previous = _source
    _source = lambda: current[0]  # noqa: E731

    def advance(delta: timedelta) -> None:
        current[0] = current[0] + delta

    try:
        yield advance
    finally:
        _source = previous
