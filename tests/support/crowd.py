"""A large role-based list for the production and chaos tests: N members seeded in bulk (seconds, not
minutes of factory calls), each with an address of their own, ``m<i>@<domain>``."""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage

import peewee as pw

from engine import clock
from engine.db import database
from engine.directory.models import Mandate, Member, Role, Structure, StructureKind
from engine.lists.models import CriterionRole, Domain, ListCriterion, MailingList

AUTHOR = "elodie.dupre@example.fr"


@dataclass(frozen=True)
class Crowd:
    address: str  # the list
    size: int

    def recipients(self, domains: tuple[str, ...] = ("example.net",)) -> set[str]:
        return {recipient(n, domains) for n in range(self.size)}


def recipient(n: int, domains: tuple[str, ...] = ("example.net",)) -> str:
    return f"m{n}@{domains[n % len(domains)]}"


def seed(size: int, domains: tuple[str, ...] = ("example.net",), local_part: str = "tous") -> Crowd:
    """A list ``tous@listes.example.fr`` reaching ``size`` members (policy: anyone may post)."""
    now = clock.now()
    national = Structure.create_node(code="FED", name="Fédération", kind=StructureKind.FEDERATION)
    region = Structure.create_node(code="CR13", name="Comité régional Provence", kind=StructureKind.REGIONAL,
                                   parent=national)
    club = Structure.create_node(code="C1301", name="Club de Cassis", kind=StructureKind.CLUB, parent=region)
    role = Role.create(code="board", name_fr="membre du comité directeur", name_en="board member", category="board")
    with database.atomic():
        for start in range(0, size, 2000):
            rows = [{"licence_number": f"A-13-{n:07d}", "first_name": "Camille", "last_name": f"Martin{n}",
                     "email": recipient(n, domains), "email_key": recipient(n, domains), "club": club.id,
                     "licence_season": 2026, "licence_valid_until": date(2027, 9, 14), "created_at": now}
                    for n in range(start, min(size, start + 2000))]
            Member.insert_many(rows).execute()
        Mandate.insert_from(
            Member.select(Member.id, pw.Value(role.id), pw.Value(region.id), pw.Value(date(2024, 1, 1)),
                          pw.Value("import")),
            [Mandate.member, Mandate.role, Mandate.structure, Mandate.starts_on, Mandate.source]).execute()
    domain = Domain.create(name="listes.example.fr", structure=national, created_at=now)
    mailing_list = MailingList.create(domain=domain, local_part=local_part, name="Tous les membres",
                                      structure=region, created_at=now, post_policy="anyone")
    criterion = ListCriterion.create(mailing_list=mailing_list, structure=region, require_valid_licence=False)
    CriterionRole.create(criterion=criterion, role=role)
    return Crowd(mailing_list.address, size)


def post(crowd: Crowd, subject: str = "Assemblée générale", message_id: str = "<ag-2026@example.fr>") -> EmailMessage:
    """A small plain-text post (copies stay cheap for the sink)."""
    message = EmailMessage()
    message["From"] = f"Élodie Dupré <{AUTHOR}>"
    message["To"] = crowd.address
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("Bonjour à tous,\nl'assemblée générale aura lieu samedi.\n")
    return message


def send(port: int, message: EmailMessage, host: str = "127.0.0.1") -> None:
    """Post ``message`` to its list through the engine's SMTP intake on ``port`` (raises unless 250)."""
    with smtplib.SMTP(host, port, timeout=60) as client:
        client.send_message(message, from_addr=AUTHOR, to_addrs=[str(message["To"])])
