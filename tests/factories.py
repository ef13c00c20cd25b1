"""Plain factory functions for test data (no factory framework: explicit defaults, overridable)."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from typing import Any

from engine import clock
from engine.directory.models import Mandate, Member, Role, Structure, StructureKind
from engine.lists.models import CriterionRole, Domain, ListCriterion, MailingList

_seq = itertools.count(1)


def structure(name: str = "", kind: str = StructureKind.CLUB, parent: Structure | None = None,
              **fields: Any) -> Structure:
    n = next(_seq)
    return Structure.create_node(code=fields.pop("code", f"S{n:05d}"), name=name or f"Structure {n}",
                                 kind=kind, parent=parent, **fields)


def role(code: str = "", name_fr: str = "", category: str = "board", **fields: Any) -> Role:
    found = Role.get_or_none(Role.code == code) if code else None
    if found:
        return found
    n = next(_seq)
    return Role.create(code=code or f"role{n}", name_fr=name_fr or code or f"Rôle {n}",
                       name_en=fields.pop("name_en", name_fr or code or f"Role {n}"), category=category, **fields)


def member(first_name: str = "Camille", last_name: str = "", email: str | None = "", club: Structure | None = None,
           valid_until: date | None = date(2027, 12, 31), **fields: Any) -> Member:
    n = next(_seq)
    m = Member(licence_number=fields.pop("licence_number", f"A-13-{n:06d}"), first_name=first_name,
               last_name=last_name or f"Martin{n}", club=club, licence_valid_until=valid_until,
               licence_season=fields.pop("licence_season", 2026), created_at=clock.now(), **fields)
    m.set_email(f"member{n}@example.org" if email == "" else email)
    m.save(force_insert=True)
    return m


def mandate(member: Member, role: Role, structure: Structure, starts_on: date = date(2024, 1, 1),
            ends_on: date | None = None) -> Mandate:
    return Mandate.create(member=member, role=role, structure=structure, starts_on=starts_on, ends_on=ends_on)


def domain(name: str = "listes.example.fr", structure: Structure | None = None, enabled: bool = True) -> Domain:
    return Domain.create(name=name, structure=structure or Structure.select().order_by(Structure.path).first(),
                         lists_enabled=enabled, created_at=clock.now())


def mailing_list(local_part: str, dom: Domain, structure: Structure | None = None, **fields: Any) -> MailingList:
    return MailingList.create(domain=dom, local_part=local_part, name=fields.pop("name", local_part),
                              structure=structure or dom.structure, created_at=clock.now(), **fields)


def criterion(ml: MailingList, structure: Structure, roles: list[Role], subtree: bool = False,
              kind: str | None = None, valid_licence: bool = True) -> ListCriterion:
    c = ListCriterion.create(mailing_list=ml, structure=structure, include_subtree=subtree,
                             structure_kind=kind, require_valid_licence=valid_licence)
    for r in roles:
        CriterionRole.create(criterion=c, role=r)
    return c


def federation_tree() -> dict[str, Any]:
    """The small federation several engine tests share (one definition instead of one per module).

    FFESSM → Comité régional Provence (CODEP 13: Club A, Club B; CODEP 83: Club C) and Comité régional
    Bretagne; the roles president, secretary and board member; the list domain listes.example.fr.
    Keys: root, provence, bretagne, cd13, cd83, club_a (also ``club``), club_b, club_c, president,
    secretary, board, dom (also ``national``).
    """
    root = structure("FFESSM", StructureKind.FEDERATION, code="FFESSM")
    provence = structure("Comité régional Provence", StructureKind.REGIONAL, root, code="CR-PROV")
    bretagne = structure("Comité régional Bretagne", StructureKind.REGIONAL, root, code="CR-BPL")
    cd13 = structure("CODEP 13", StructureKind.DEPARTMENTAL, provence, code="CD-13")
    cd83 = structure("CODEP 83", StructureKind.DEPARTMENTAL, provence, code="CD-83")
    club_a = structure("Club A", StructureKind.CLUB, cd13, code="CLUB-13-0001")
    club_b = structure("Club B", StructureKind.CLUB, cd13, code="CLUB-13-0002")
    club_c = structure("Club C", StructureKind.CLUB, cd83, code="CLUB-83-0001")
    dom = domain("listes.example.fr", root)
    return dict(root=root, provence=provence, bretagne=bretagne, cd13=cd13, cd83=cd83, club_a=club_a, club=club_a,
                club_b=club_b, club_c=club_c, president=role("president", "Président"),
                secretary=role("secretary", "Secrétaire"), board=role("board_member", "Membre du comité directeur"),
                dom=dom, national=dom)


def at(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour)


# --- member space (issue 3) ---

def cheap_password_hashing() -> None:
    """argon2's cheapest profile (tests only): a hash costs microseconds instead of about 150 ms."""
    from argon2 import PasswordHasher, profiles

    from engine.directory import passwords

    passwords.configure(PasswordHasher.from_parameters(profiles.CHEAPEST))


def member_with_password(password: str = "bonne-plongee-2026", **fields: Any) -> Member:
    """A member who can log in (cheap hashing is switched on first)."""
    from engine.directory.passwords import hash_password

    cheap_password_hashing()
    return member(password_hash=hash_password(password), **fields)


def board_list(mem: Member, local_part: str = "cd.provence", name: str = "Comité directeur Provence") -> MailingList:
    """A role-based list whose one criterion (board members of the member's club) reaches ``mem``."""
    club = mem.club or structure("Club de test")
    if mem.club_id is None:
        mem.club = club
        mem.save(only=[Member.club])
    board = role("board_member", "Membre du comité directeur", name_en="Board member")
    mandate(mem, board, club)
    dom = Domain.get_or_none(Domain.name == "listes.example.fr") or domain(structure=club)
    ml = mailing_list(local_part, dom, club, name=name)
    criterion(ml, club, [board])
    return ml


def close_bound_connection() -> None:
    """Close every connection of whatever database the models are bound to now (its pool too).

    ``create_app`` and the CLI bind the models to their own database object; queries a test makes outside a
    request open a connection on it that nobody closes, and psycopg warns when it is collected later, in
    some other test. Call this at the end of such tests (a fixture's teardown).
    """
    from engine.db import database, release

    if database.obj is not None:
        release(database.obj)
