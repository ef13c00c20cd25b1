"""What Mon espace shows a member about themselves: licence and season, club and structures, current mandates,
the address the lists use and the change in progress. Read-only; always for the logged-in member."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, NamedTuple

from engine import clock
from engine.config import Settings
from engine.db import database
from engine.directory.email_change import pending_change
from engine.directory.models import EmailChange, Mandate, Member, Role, Structure
from engine.prepared import Prepared, slot


@dataclass(frozen=True)
class Season:
    start: date
    end: date

    @property
    def label(self) -> str:
        return f"{self.start.year}-{self.start.year + 1}"


class Place(NamedTuple):
    """A structure as the page names it."""

    id: int
    name: str
    depth: int


class RoleNames(NamedTuple):
    fr: str
    en: str

    def name(self, language: str) -> str:
        return self.en if language == "en" else self.fr


class MandateShown(NamedTuple):
    """A mandate as the page shows it: the role's names, the structure, the dates."""

    role: RoleNames
    structure: Place
    starts_on: date
    ends_on: date | None


@dataclass(frozen=True)
class Profile:
    member: Member
    club: Place | None
    structures: list[Place]  # the club and every structure above it, federation first
    season: Season
    licence_valid: bool
    mandates: list[MandateShown]  # in force today
    pending: EmailChange | None


def season_of(day: date, season_start: tuple[int, int]) -> Season:
    """The licence season containing ``day`` (named by the year it starts in)."""
    month, first = season_start
    start = date(day.year, month, first)
    if day < start:
        start = date(day.year - 1, month, first)
    return Season(start, date(start.year + 1, month, first) - timedelta(days=1))


# Mon espace runs these on every visit: compiled once (engine/prepared.py), rows read as plain tuples.
_MANDATES: Prepared[Any] = Prepared(lambda: (
    Mandate.select(Role.name_fr, Role.name_en, Structure.id, Structure.name, Structure.depth, Mandate.starts_on,
                   Mandate.ends_on).join(Role).switch(Mandate).join(Structure)
    .where((Mandate.member == slot("member")) & (Mandate.starts_on <= slot("day", Mandate.starts_on))
           & (Mandate.ends_on.is_null() | (Mandate.ends_on >= slot("day", Mandate.ends_on))))
    .order_by(Structure.depth, Role.rank, Mandate.starts_on)))


# A structure and every structure above it, root first: up the parent links (four primary-key reads).
_CLUB_AND_ABOVE = ("WITH RECURSIVE up (id, name, depth, parent_id) AS ("
                   "SELECT id, name, depth, parent_id FROM structure WHERE id = {p} UNION ALL "
                   "SELECT s.id, s.name, s.depth, s.parent_id FROM structure s JOIN up ON s.id = up.parent_id) "
                   "SELECT id, name, depth FROM up ORDER BY depth")


def _date(value: Any) -> Any:
    return date.fromisoformat(value) if isinstance(value, str) else value  # SQLite's ISO text, or a date


def current_mandates(member: Member, day: date) -> list[MandateShown]:
    return [MandateShown(RoleNames(fr, en), Place(sid, name, depth), _date(starts), _date(ends))
            for fr, en, sid, name, depth, starts, ends in _MANDATES.rows(member=member.id, day=day)]


def profile(settings: Settings, member: Member) -> Profile:
    today = clock.today(settings.timezone)
    structures = [Place(*row) for row in database.obj.execute_sql(
        _CLUB_AND_ABOVE.format(p=database.obj.param), (member.club_id,))] if member.club_id else []
    club = structures[-1] if structures and structures[-1].id == member.club_id else None
    return Profile(
        member=member,
        club=club,
        structures=structures if club is not None else [],
        season=season_of(today, settings.season_start),
        licence_valid=member.licence_valid_on(today),
        mandates=current_mandates(member, today),
        pending=pending_change(settings, member),
    )
