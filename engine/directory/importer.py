"""Import of the federation's member export (CSV): members, their club, season and mandates. See docs/import.md.

Idempotent: a row equal to what the database holds changes nothing. Bad rows are reported with their line
number and reason while the good ones are imported (each row in its own savepoint). An address a member
changed themselves since the last import is kept unless ``overwrite_emails`` is set.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TextIO

from engine import audit, clock
from engine.config import Settings
from engine.db import batched, database
from engine.directory import staff, staff_changes
from engine.directory.models import EmailChange, Mandate, Member, Role, Structure, email_key, valid_address

COLUMNS = ("numero_licence", "nom", "prenom", "email", "club", "saison", "roles")
REQUIRED = ("numero_licence", "nom", "prenom", "club", "saison")
LICENCE = re.compile(r"^[A-Z0-9][A-Z0-9-]{2,31}$")
ROLE_ITEM = re.compile(r"^(?P<role>[^@:]+)@(?P<structure>[^:]+)(?::(?P<start>[0-9-]*)\.\.(?P<end>[0-9-]*))?$")
BATCH = 500
REASONS_EN = {
    "missing": "required column empty: {value}", "bad_licence": "malformed licence number {value!r}",
    "duplicate": "licence number {value} already on line {line}", "bad_email": "invalid e-mail address {value!r}",
    "unknown_club": "unknown club {value!r}", "bad_season": "season is not a year: {value!r}",
    "bad_role": "malformed role {value!r}", "unknown_role": "unknown role {value!r}",
    "unknown_structure": "unknown structure {value!r}", "bad_dates": "bad mandate dates {value!r}",
    "out_of_scope": "{value} is outside your scopes", "database": "could not be saved: {value}",
    "bad_header": "missing columns: {value}",
    "protected": "{value} holds staff rights: only a federation administrator covering them may change the address",
    "protected_mandate": "{value} holds a mandate beyond your scopes: only staff covering it may change the address",
    "protected_list": "{value} owns or moderates a list beyond your scopes: only staff covering it may change the "
                      "address",
}


class ImportFileError(ValueError):
    """The file cannot be read as a member export at all (no row was imported)."""


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str  # a key of REASONS_EN
    value: str = ""
    other_line: int = 0

    def describe(self) -> str:
        return REASONS_EN[self.reason].format(value=self.value, line=self.other_line)


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    mandates_added: int = 0
    mandates_removed: int = 0
    kept_addresses: list[tuple[int, str]] = field(default_factory=list)  # (line, licence number)
    bad: list[BadRow] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    line: int
    licence: str
    last_name: str
    first_name: str
    email: str | None
    club: Structure
    season: int
    mandates: frozenset[tuple[int, int, date | None, date | None]]  # (role, structure, starts_on, ends_on)


def open_rows(handle: TextIO) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row by lower-case column) of a ``;``- or ``,``-separated export; BOM tolerated."""
    first = handle.readline().lstrip("\ufeff")
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    header = [h.strip().lower() for h in next(csv.reader([first], delimiter=delimiter), [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFileError(REASONS_EN["bad_header"].format(value=", ".join(missing)))
    reader = csv.reader(handle, delimiter=delimiter)
    line = 1
    for values in reader:
        line += 1
        if any(v.strip() for v in values):
            yield line, {k: (values[i].strip() if i < len(values) else "") for i, k in enumerate(header)}
        line = reader.line_num + 1


class _Parser:
    """Turns raw rows into ``Row`` objects, with the structures and roles loaded once."""

    def __init__(self, settings: Settings, actor: Member | None, rights_beyond: staff.RightsBeyond) -> None:
        self.season_start = settings.season_start
        self.structures = {s.code.upper(): s for s in Structure.select()}
        self.roles: dict[str, int] = {r.code.lower(): r.id for r in Role.select(Role.id, Role.code)}
        self.scope = None if actor is None else {s.id for s in staff.manageable_structures(actor)}
        self.authority = staff.authority(actor, rights_beyond)
        self.seen: dict[str, int] = {}

    def structure(self, code: str, what: str) -> Structure:
        found = self.structures.get(code.strip().upper())
        if found is None:
            raise _Bad(what, code)
        if self.scope is not None and found.id not in self.scope:
            raise _Bad("out_of_scope", found.code)
        return found

    def parse(self, line: int, raw: dict[str, str]) -> Row:
        for column in REQUIRED:
            if not raw.get(column):
                raise _Bad("missing", column)
        licence = raw["numero_licence"].upper()
        if not LICENCE.match(licence):
            raise _Bad("bad_licence", raw["numero_licence"])
        if licence in self.seen:
            raise _Bad("duplicate", licence, self.seen[licence])
        email = raw.get("email") or None
        if email and valid_address(email) is None:
            raise _Bad("bad_email", email)
        if not raw["saison"].isdigit() or not 1990 <= int(raw["saison"]) <= 2200:
            raise _Bad("bad_season", raw["saison"])
        season = int(raw["saison"])
        club = self.structure(raw["club"], "unknown_club")
        mandates = frozenset(self.mandate(item, season) for item in raw.get("roles", "").split("|") if item.strip())
        self.seen[licence] = line
        return Row(line, licence, raw["nom"], raw["prenom"], email, club, season, mandates)

    def mandate(self, item: str, season: int) -> tuple[int, int, date | None, date | None]:
        match = ROLE_ITEM.match(item.strip())
        if not match:
            raise _Bad("bad_role", item.strip())
        role = self.roles.get(match["role"].strip().lower())
        if role is None:
            raise _Bad("unknown_role", match["role"].strip())
        structure = self.structure(match["structure"], "unknown_structure")
        try:
            starts = date.fromisoformat(match["start"]) if match["start"] else None
            ends = date.fromisoformat(match["end"]) if match["end"] else None
        except ValueError:
            raise _Bad("bad_dates", item.strip()) from None
        if ends is not None and ends < (starts or date(season, *self.season_start)):
            raise _Bad("bad_dates", item.strip())
        return role, structure.id, starts, ends

    def season_end(self, season: int) -> date:
        return date(season + 1, *self.season_start) - timedelta(days=1)


class _Bad(Exception):
    def __init__(self, reason: str, value: object = "", other_line: int = 0) -> None:
        super().__init__(reason)
        self.reason, self.value, self.other_line = reason, str(value), other_line


def import_members(settings: Settings, handle: TextIO, *, actor: Member | None = None,
                   rights_beyond: staff.RightsBeyond, overwrite_emails: bool = False,
                   progress: Callable[[int], object] = lambda _n: None, source: str = "",
                   ip: str | None = None) -> ImportReport:
    """Import the export read from ``handle``; ``progress(rows_done)`` is called after each batch.

    ``rights_beyond`` is the lists' part of the actor's authority (``engine.lists.authority.rights_beyond``):
    a row that would change the address of someone the actor does not fully cover is reported and skipped.
    """
    parser = _Parser(settings, actor, rights_beyond)
    report = ImportReport()
    writer = _Writer(settings, parser, report, actor, overwrite_emails, ip)
    for chunk in batched(open_rows(handle), BATCH):
        rows: list[Row] = []
        for line, raw in chunk:
            try:
                rows.append(parser.parse(line, raw))
            except _Bad as bad:
                report.bad.append(BadRow(line, bad.reason, bad.value, bad.other_line))
        writer.write(rows)
        report.rows += len(chunk)
        progress(report.rows)
    report.bad.sort(key=lambda b: b.line)
    scope = staff.scopes(actor)[0].id if actor is not None and staff.scopes(actor) else None
    audit.record("members.imported", None, actor=actor, actor_label="" if actor else "import", structure_id=scope,
                 ip=ip, source=source, rows=report.rows, created=report.created, updated=report.updated,
                 unchanged=report.unchanged, bad_rows=len(report.bad), kept_addresses=len(report.kept_addresses),
                 mandates_added=report.mandates_added, mandates_removed=report.mandates_removed)
    return report


class _Writer:
    def __init__(self, settings: Settings, parser: _Parser, report: ImportReport, actor: Member | None,
                 overwrite: bool, ip: str | None) -> None:
        self.settings, self.parser, self.report, self.actor, self.overwrite = settings, parser, report, actor, overwrite
        self.ip = ip

    def write(self, rows: list[Row]) -> None:
        licences = [r.licence for r in rows]
        members = {m.licence_number: m for m in Member.select().where(Member.licence_number.in_(licences))}
        mandates: dict[int, list[Mandate]] = {}
        for mandate in Mandate.select().where(Mandate.member.in_([m.id for m in members.values()])):
            mandates.setdefault(mandate.member_id, []).append(mandate)
        changes = []
        with database.atomic():
            for row in rows:
                try:
                    with database.atomic():
                        change = self.row(row, members.get(row.licence), mandates)
                except _Bad as bad:
                    self.report.bad.append(BadRow(row.line, bad.reason, bad.value))
                except Exception as exc:  # noqa: BLE001 - one bad row must not stop the others
                    self.report.bad.append(BadRow(row.line, "database", type(exc).__name__))
                else:
                    changes += [change] if change is not None else []
        for change in changes:  # once committed: the old addresses hear of it, with the link that restores them
            staff_changes.notify(self.settings, change)

    def row(self, row: Row, member: Member | None, mandates: dict[int, list[Mandate]]) -> EmailChange | None:
        """Create or update the row's member; returns the address change it imposed, if any."""
        if member is not None and not self.parser.authority.covers(member):
            raise _Bad("out_of_scope", row.licence)
        now = clock.now()
        if member is None:
            member = Member(licence_number=row.licence, created_at=now, email_imported_at=now)
            member.set_email(row.email)
            self._fields(member, row)
            member.save(force_insert=True)
            self.report.created += 1
            self._mandates(member, row, [])
            return None
        touched = self._email(member, row, now)
        change = None
        if touched == ["email"]:
            change = staff_changes.record(member, row.email, source="import", actor=self.actor, ip=self.ip, now=now)
            member.set_email(row.email)
        changed = self._fields(member, row) + touched
        if changed:
            member.save()
        visible = [c for c in changed if c != "email_imported_at"]
        moved = self._mandates(member, row, mandates.get(member.id, []))
        if visible or moved:
            audit.record("member.imported", member, actor=self.actor, actor_label="" if self.actor else "import",
                         structure_id=member.club_id, fields=visible, mandates_changed=moved)
            self.report.updated += 1
        else:
            self.report.unchanged += 1
        return change

    def _fields(self, member: Member, row: Row) -> list[str]:
        values = {"first_name": row.first_name, "last_name": row.last_name, "club_id": row.club.id,
                  "licence_season": row.season, "licence_valid_until": self.parser.season_end(row.season)}
        changed = [k for k, v in values.items() if getattr(member, k, None) != v]
        for key in changed:
            setattr(member, key, values[key])
        return changed

    def _email(self, member: Member, row: Row, now: datetime) -> list[str]:
        set_by_member = member.email_set_by_member_at
        protected = set_by_member is not None and (member.email_imported_at is None
                                                   or set_by_member > member.email_imported_at)
        if member.email_key == email_key(row.email):
            if member.email_imported_at is None or protected:
                member.email_imported_at = now  # the export caught up with the member's address
                return ["email_imported_at"]
            return []
        if protected and not self.overwrite:
            self.report.kept_addresses.append((row.line, row.licence))
            return []
        refusal = self.parser.authority.refusal(member)
        if refusal is not None:
            raise _Bad(refusal, row.licence)  # the whole row is skipped (issue 11, finding 1)
        member.email_imported_at = now
        return ["email"]

    def _mandates(self, member: Member, row: Row, existing: Iterable[Mandate]) -> bool:
        """Add, re-date and remove the member's imported mandates to match the row (the export rules them).

        A mandate given without a start date matches the member's mandate of that role and structure
        whatever its start (the season start when it is created), so that a new season changes nothing.
        """
        left = list(existing)
        changed = False
        for role, structure, starts, ends in sorted(row.mandates, key=lambda m: m[2] is None):
            found = next((m for m in left if (m.role_id, m.structure_id) == (role, structure)
                          and (starts is None or m.starts_on == starts)), None)
            if found is None:
                Mandate.create(member=member, role=role, structure=structure, ends_on=ends, source="import",
                               starts_on=starts or date(row.season, *self.parser.season_start))
                self.report.mandates_added += 1
                changed = True
                continue
            left.remove(found)
            if found.source == "import" and found.ends_on != ends:
                Mandate.update(ends_on=ends).where(Mandate.id == found.id).execute()
                changed = True
        for mandate in left:
            in_scope = self.parser.scope is None or mandate.structure_id in self.parser.scope
            if mandate.source == "import" and in_scope:
                mandate.delete_instance()
                self.report.mandates_removed += 1
                changed = True
        return changed

def summary_text(report: ImportReport) -> str:
    """The command line's report: counts, then one line per bad row and per kept address."""
    lines = [f"{report.rows} rows: {report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
             f"{len(report.bad)} rejected; mandates {report.mandates_added} added, {report.mandates_removed} removed"]
    lines += [f"line {b.line}: {b.describe()}" for b in report.bad]
    lines += [f"line {line}: {licence}: address kept (changed by the member since the last import)"
              for line, licence in report.kept_addresses]
    return "\n".join(lines)
