"""What Mon espace shows a member about themselves: licence and season, club and structures, current mandates,
the address the lists use and the change in progress. Read-only; always for the logged-in member."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from engine import clock
from engine.config import Settings
from engine.directory.email_change import pending_change
from engine.directory.models import EmailChange, Mandate, Member, Role, Structure


@dataclass(frozen=True)
class Season:
    start: date
    end: date

    @property
    def label(self) -> str:
        return f"{self.start.year}-{self.start.year + 1}"


@dataclass(frozen=True)
class Profile:
    member: Member
    club: Structure | None
    structures: list[Structure]  # the club and every structure above it, federation first
    season: Season
    licence_valid: bool
    mandates: list[Mandate]  # in force today, with role and structure loaded
    pending: EmailChange | None


def season_of(day: date, season_start: tuple[int, int]) -> Season:
    """The licence season containing ``day`` (named by the year it starts in)."""
    month, first = season_start
    start = date(day.year, month, first)
    if day < start:
        start = date(day.year - 1, month, first)
    return Season(start, date(start.year + 1, month, first) - timedelta(days=1))


def current_mandates(member: Member, day: date) -> list[Mandate]:
    return list(Mandate.select(Mandate, Role, Structure).join(Role).switch(Mandate).join(Structure)
                .where((Mandate.member == member.id) & Mandate.current(day))
                .order_by(Structure.depth, Role.rank, Mandate.starts_on))


def profile(settings: Settings, member: Member) -> Profile:
    today = clock.today(settings.timezone)
    club = Structure.get_or_none(Structure.id == member.club_id) if member.club_id else None
    return Profile(
        member=member,
        club=club,
        structures=list(club.ancestors()) if club is not None else [],
        season=season_of(today, settings.season_start),
        licence_valid=member.licence_valid_on(today),
        mandates=current_mandates(member, today),
        pending=pending_change(settings, member),
    )
