"""Mon espace's whole page, kept per value of everything it shows (issue 14).

Every visit still reads the member's data (``Page.of``: four compiled statements and the session's member), so
what the page shows is always current; only the HTML made from those values is kept. The key is the ``Page``
itself (every value the template reads: the card, the address, the bounce warning, the pending change with its
dates, the mandates, the lists with their reasons and opt-outs), the language, time zone and script root, and
whether the navigation shows the staff links: a change of any of them makes another key, nothing is invalidated
by hand. The CSRF token (per session) is not part of the kept HTML: the page is rendered once with a marker in
its place, kept as the parts between the markers, and joined with the request's token at each visit. A page
with a flashed message or a leave/rejoin confirmation is rendered as before and never kept.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import NamedTuple

from flask import current_app, render_template, session

from engine.bounces.member import AddressStatus
from engine.directory.models import EmailChange
from engine.directory.profile import MandateShown, Profile
from engine.lists.member_lists import MemberList
from portal import rendering

PAGES_KEPT = 4096  # per process and app; the whole set is forgotten when full, or when it holds
CHARACTERS_KEPT = 16_000_000  # this much HTML (a page is 6-10 KB; a member on 200 lists', about 100 KB)
TEMPLATE = "espace/index.html"
_MARK = f"csrf{secrets.token_hex(16)}"  # stands for the CSRF token in a kept page: no member can type it
_KEPT = "palanquee.espace_pages"


class Card(NamedTuple):
    """What the profile card shows, and nothing else: its HTML is kept per value (``rendering.fragment``)."""

    first_name: str
    last_name: str
    licence_number: str
    club: str | None
    structures: tuple[str, ...]
    licence_valid: bool
    season: str
    licence_valid_until: date | None

    @classmethod
    def of(cls, shown: Profile) -> Card:
        m = shown.member
        return cls(m.first_name, m.last_name, m.licence_number, shown.club.name if shown.club else None,
                   tuple(s.name for s in shown.structures), shown.licence_valid, shown.season.label,
                   m.licence_valid_until)


class Pending(NamedTuple):
    """The address change in progress, as the page shows it (a peewee model compares by id only)."""

    new_email: str
    requested_at: datetime
    verified_at: datetime | None
    effective_at: datetime | None

    @classmethod
    def of(cls, change: EmailChange | None) -> Pending | None:
        if change is None:
            return None
        return cls(change.new_email, change.requested_at, change.verified_at, change.effective_at)


class Page(NamedTuple):
    """Every value Mon espace's template reads (``templates/espace/index.html`` reads nothing else of the member)."""

    card: Card
    email: str | None
    bouncing: AddressStatus | None
    pending: Pending | None
    mandates: tuple[MandateShown, ...]
    lists: tuple[MemberList, ...]

    @classmethod
    def of(cls, shown: Profile, lists: list[MemberList], bouncing: AddressStatus | None) -> Page:
        return cls(Card.of(shown), shown.member.email, bouncing, Pending.of(shown.pending), tuple(shown.mandates),
                   tuple(lists))


def render_page(page: Page, done: dict[str, object] | None, staff: bool) -> str:
    """The page's HTML: kept per ``page``, language, place and ``staff`` when nothing of the moment is shown."""
    if done is not None or "_flashes" in session:
        return render_template(TEMPLATE, page=page, done=done)
    kept: _Kept = current_app.extensions.get(_KEPT) or current_app.extensions.setdefault(_KEPT, _Kept())
    key = (page, rendering.where(), staff)
    parts = kept.pages.get(key)
    if parts is None:
        html = render_template(TEMPLATE, page=page, done=None, csrf_token=_mark)
        parts = tuple(html.split(_MARK))
        kept.keep(key, parts, len(html))
    return rendering.csrf_token().join(parts) if len(parts) > 1 else parts[0]


class _Kept:
    """The pages kept for one app, and how much HTML they hold."""

    def __init__(self) -> None:
        self.pages: dict[tuple[object, ...], tuple[str, ...]] = {}
        self.characters = 0

    def keep(self, key: tuple[object, ...], parts: tuple[str, ...], size: int) -> None:
        if len(self.pages) >= PAGES_KEPT or self.characters + size > CHARACTERS_KEPT:
            self.pages.clear()
            self.characters = 0
        self.pages[key] = parts
        self.characters += size


def _mark() -> str:
    return _MARK


def forget(app: object) -> None:
    """Forget every kept page of ``app`` (benchmarks measure a page with nothing kept)."""
    getattr(app, "extensions", {}).pop(_KEPT, None)
