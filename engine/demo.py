"""A synthetic but realistic federation for the demo and the benchmarks (``palanquee demo-data``).

National federation → regional committees → departmental committees → clubs; members with French
names (Faker fr_FR, seeded), licences of this season and lapsed ones, families sharing one address,
members without address; boards, commissions and instructors as mandates, some people holding
several mandates in several structures, some terms ended. Two mail domains (list service on / off)
and a few role-based and static lists. Built with batched inserts: 100,000 members in seconds.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from faker import Faker

from engine import clock
from engine.config import Settings
from engine.db import batched, database
from engine.directory.models import Mandate, Member, Role, StaffScope, Structure, StructureKind
from engine.directory.passwords import hash_password
from engine.lists.models import CriterionRole, Domain, ListCriterion, ListKind, MailingList, Subscription

DEMO_PASSWORD = "plongee-demo"
MEMBER_LICENCE = "A-13-000001"
STAFF_LICENCE = "A-13-000002"
ADMIN_LICENCE = "A-75-000003"
DEMO_POSTER = "elodie.marchetti@orange.fr"  # the demo member: on the Provence board, may post to its list
ACCOUNTS = {MEMBER_LICENCE: "membre (licenciée)", STAFF_LICENCE: "personnel du comité régional Provence",
            ADMIN_LICENCE: "administratrice fédérale"}
LIST_DOMAIN = "listes.ffessm-demo.fr"
OFF_DOMAIN = "listes.codep13-demo.fr"
DEMO_LIST = f"comite_directeur.comite@{LIST_DOMAIN}"  # the Provence board, where DEMO_POSTER sits
# Defaults of `palanquee demo` where the environment and the TOML file say nothing: notices come
# from a real address of the demo's mail domain, not from noreply@127.0.0.1.
# The demo runs on loopback with no DNS of its own: it never looks a name up on the Internet (no DMARC, SPF
# or DKIM lookups), and trusts the From of posts, since no MTA in front authenticates them (docs/demo.md).
SETTING_DEFAULTS = {"mail_from": f"noreply@{LIST_DOMAIN}", "dns_resolver": "none", "inbound_authentication": "off"}

REGIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("PROV", "Provence-Alpes-Côte d’Azur", ("04", "05", "06", "13", "83", "84")),
    ("IDF", "Île-de-France", ("75", "77", "78", "91", "92", "93", "94", "95")),
    ("BPL", "Bretagne-Pays de la Loire", ("22", "29", "35", "44", "49", "53", "56", "72", "85")),
    ("AURA", "Auvergne-Rhône-Alpes", ("01", "07", "26", "38", "42", "63", "69", "73", "74")),
    ("OPM", "Occitanie-Pyrénées-Méditerranée", ("11", "30", "31", "34", "66", "81")),
    ("NAQ", "Nouvelle-Aquitaine", ("17", "33", "40", "64", "86", "87")),
    ("HDF", "Hauts-de-France", ("59", "60", "62", "80")),
    ("EST", "Grand Est", ("51", "54", "57", "67", "68")),
    ("NOR", "Normandie", ("14", "50", "76")),
    ("CVL", "Centre-Val de Loire", ("18", "37", "45")),
    ("BFC", "Bourgogne-Franche-Comté", ("21", "25", "71")),
    ("CORSE", "Corse", ("2A", "2B")),
)
BOARD = (("president", "Président(e)", "President", 1), ("vice_president", "Vice-président(e)", "Vice-president", 2),
         ("secretary", "Secrétaire", "Secretary", 3), ("treasurer", "Trésorier(ère)", "Treasurer", 4),
         ("board_member", "Membre du comité directeur", "Board member", 5))
COMMISSIONS = (("technique", "technique", "technical"), ("biologie", "environnement et biologie", "biology"),
               ("apnee", "apnée", "freediving"), ("audiovisuelle", "audiovisuelle", "audiovisual"),
               ("nap", "nage avec palmes", "fin swimming"), ("hockey", "hockey subaquatique", "underwater hockey"),
               ("archeologie", "archéologie", "archaeology"), ("souterraine", "plongée souterraine", "cave diving"))
INSTRUCTORS = (("e1", "Initiateur E1"), ("e2", "Moniteur E2"), ("e3", "Moniteur fédéral E3"),
               ("e4", "Moniteur E4"), ("mf1", "Moniteur fédéral 1er degré (MF1)"),
               ("mf2", "Moniteur fédéral 2e degré (MF2)"))
CLUB_WORDS = ("Plongée", "Subaquatique", "Palmes", "Dauphins", "Mérous", "Poulpes", "Corail", "Grand Bleu",
              "Abysses", "Hippocampes", "Nautilus", "Posidonie", "Calanques", "Tritons", "Narvals")
PROVIDERS = ("orange.fr", "wanadoo.fr", "free.fr", "sfr.fr", "gmail.com", "laposte.net", "hotmail.fr",
             "yahoo.fr", "outlook.fr", "neuf.fr", "icloud.com", "bbox.fr")


class AlreadyPopulated(Exception):
    """The database already holds members; the demo federation is built only into an empty one."""


@dataclass
class Summary:
    members: int = 0
    structures: int = 0
    mandates: int = 0
    lists: list[str] = field(default_factory=list)
    accounts: list[tuple[str, str, str]] = field(default_factory=list)  # (what, licence, password)


def is_empty() -> bool:
    return not Member.select().exists()


def season_bounds(today: date, season_start: tuple[int, int]) -> tuple[date, date]:
    """First and last day of the season containing ``today``."""
    month, day = season_start
    start = date(today.year, month, day)
    if today < start:
        start = date(today.year - 1, month, day)
    return start, date(start.year + 1, month, day) - timedelta(days=1)


def town_name(generated: str) -> str:
    """Faker's French towns glue a suffix to a first name ("Sainte ConstanceBourg"): put the space back."""
    return re.sub(r"(?<=[a-zàâçéèêëîïôûùüÿœ])(Bourg|Ville)$", r" \1", generated)


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().replace(" ", "")


class _Builder:
    def __init__(self, settings: Settings, members: int, seed: int, progress: Callable[[str], object]) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("fr_FR")
        self.fake.seed_instance(seed)
        self.count = max(members, 10)
        self.progress = progress
        self.today = clock.today(settings.timezone)
        self.season_start, self.season_end = season_bounds(self.today, settings.season_start)
        self.now = clock.now()
        self.summary = Summary()
        self.roles: dict[str, Role] = {}

    # --- structures and roles ---
    def roles_table(self) -> None:
        rows = [dict(code=c, name_fr=fr, name_en=en, category="board", rank=r) for c, fr, en, r in BOARD]
        for i, (code, fr, en) in enumerate(COMMISSIONS):
            rows.append(dict(code=f"commission_president_{code}", name_fr=f"Président(e) de la commission {fr}",
                             name_en=f"President of the {en} commission", category="commission", rank=20 + 2 * i))
            rows.append(dict(code=f"commission_member_{code}", name_fr=f"Membre de la commission {fr}",
                             name_en=f"Member of the {en} commission", category="commission", rank=21 + 2 * i))
        for i, (code, name) in enumerate(INSTRUCTORS):
            rows.append(dict(code=f"instructor_{code}", name_fr=name, name_en=f"Instructor {code.upper()}",
                             category="instructor", rank=60 + i))
        Role.insert_many(rows).execute()
        self.roles = {r.code: r for r in Role.select()}

    def structures(self) -> tuple[Structure, list[Structure], list[Structure], list[Structure]]:
        fed = Structure.create_node(code="FFESSM", name="Fédération française d’études et de sports sous-marins",
                                    kind=StructureKind.FEDERATION)
        regions, codeps, clubs = [], [], []
        club_total = max(self.count // 65, 12)
        departments = [(code, name, dep) for code, name, deps in REGIONS for dep in deps]
        for code, name, deps in REGIONS:
            region = Structure.create_node(code=f"CR-{code}", name=f"Comité régional {name}",
                                           kind=StructureKind.REGIONAL, parent=fed)
            regions.append(region)
            for dep in deps:
                codeps.append(Structure.create_node(code=f"CD-{dep}", name=f"Comité départemental {dep}",
                                                    kind=StructureKind.DEPARTMENTAL, parent=region, department=dep))
        by_dep = {c.department: c for c in codeps}
        for n in range(club_total):
            # Provence and Île-de-France hold more clubs, as they do in life.
            if n < 3:  # the demo accounts' club (13) and clubs elsewhere exist at any size
                dep = ("13", "13", "29")[n]
            elif n % 3:
                dep = departments[n % len(departments)][2]
            else:  # Provence, Île-de-France and the coasts hold more clubs, as they do in life
                dep = self.rng.choice(("13", "83", "06", "75", "92", "29", "34"))
            town = town_name(self.fake.city())
            name = f"{self.rng.choice(CLUB_WORDS)} Club {town}" if n % 2 else f"Club de plongée de {town}"
            clubs.append(Structure.create_node(code=f"CLUB-{dep}-{n + 1:04d}", name=name, kind=StructureKind.CLUB,
                                               parent=by_dep[dep], department=dep))
        self.summary.structures = 1 + len(regions) + len(codeps) + len(clubs)
        return fed, regions, codeps, clubs

    # --- members ---
    def member_rows(self, clubs: list[Structure]) -> list[dict[str, object]]:
        lapsed_until = self.season_start - timedelta(days=1)
        rows: list[dict[str, object]] = []
        for i in range(self.count):
            club = clubs[i % len(clubs)] if i % 4 else self.rng.choice(clubs)
            first, last = self.fake.first_name(), self.fake.last_name()
            roll = self.rng.random()
            email: str | None
            if roll < 0.03:
                email = None  # no address on file
            elif roll < 0.09 and rows and rows[-1]["club"] == club.id and rows[-1]["email"]:
                email, last = str(rows[-1]["email"]), str(rows[-1]["last_name"])  # a family address
            else:
                email = f"{_ascii(first)}.{_ascii(last)}{self.rng.randint(1, 999)}@{self.rng.choice(PROVIDERS)}"
                if self.rng.random() < 0.05:
                    email = email.capitalize()  # typed with capitals; compared case-insensitively
            lapsed = self.rng.random() < 0.15
            rows.append(dict(
                licence_number=f"{'ABCDE'[i % 5]}-{club.department}-{100000 + i:06d}", first_name=first,
                last_name=last, email=email, email_key=email.lower() if email else None, club=club.id,
                licence_season=self.season_start.year - (1 if lapsed else 0),
                licence_valid_until=lapsed_until if lapsed else self.season_end, created_at=self.now))
        return rows

    def insert_members(self, rows: list[dict[str, object]]) -> dict[int, list[int]]:
        """Insert in batches; returns member ids by club id."""
        for number, batch in enumerate(batched(rows, 1000)):
            Member.insert_many(batch).execute()
            if number % 20 == 19:
                self.progress(f"  {min((number + 1) * 1000, len(rows))} members")
        by_club: dict[int, list[int]] = {}
        for member_id, club_id in Member.select(Member.id, Member.club).tuples().iterator():
            by_club.setdefault(club_id, []).append(member_id)
        self.summary.members = len(rows)
        return by_club

    # --- mandates ---
    def mandate_rows(self, fed: Structure, regions: list[Structure], codeps: list[Structure],
                     clubs: list[Structure], by_club: dict[int, list[int]]) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        pool_of: dict[int, list[int]] = {c.id: by_club.get(c.id, []) for c in clubs}
        for codep in codeps:
            pool_of[codep.id] = [m for c in clubs if c.parent_id == codep.id for m in pool_of[c.id]]
        for region in regions:
            pool_of[region.id] = [m for c in codeps if c.parent_id == region.id for m in pool_of[c.id]]
        pool_of[fed.id] = [m for r in regions for m in pool_of[r.id]]
        for structure in [fed, *regions, *codeps, *clubs]:
            pool = pool_of[structure.id]
            if len(pool) < 8:
                continue
            rows += self.board(structure, pool)
            if structure.kind != StructureKind.CLUB:
                rows += self.commissions(structure, pool)
            else:
                rows += self.instructors(structure, pool)
        return rows

    def _mandate(self, member_id: int, role: str, structure: Structure, ended: bool = False) -> dict[str, object]:
        start = self.today - timedelta(days=self.rng.randint(30, 3 * 365))
        end = self.today - timedelta(days=self.rng.randint(1, 25)) if ended else None
        if end is not None:
            start = min(start, end - timedelta(days=365))
        return dict(member=member_id, role=self.roles[role].id, structure=structure.id, starts_on=start,
                    ends_on=end, source="import")

    def board(self, structure: Structure, pool: list[int]) -> list[dict[str, object]]:
        size = 4 + self.rng.randint(3, 8)
        people = self.rng.sample(pool, min(size + 1, len(pool)))
        rows = [self._mandate(people[i], code, structure) for i, (code, *_r) in enumerate(BOARD[:4])]
        rows += [self._mandate(p, "board_member", structure) for p in people[4:size]]
        if len(people) > size:  # a past president whose term ended recently
            rows.append(self._mandate(people[size], "president", structure, ended=True))
        return rows

    def commissions(self, structure: Structure, pool: list[int]) -> list[dict[str, object]]:
        rows = []
        count = len(COMMISSIONS) if structure.kind == StructureKind.FEDERATION else self.rng.randint(2, 5)
        for code, *_names in self.rng.sample(COMMISSIONS, count):
            people = self.rng.sample(pool, min(len(pool), self.rng.randint(3, 7)))
            rows.append(self._mandate(people[0], f"commission_president_{code}", structure))
            rows += [self._mandate(p, f"commission_member_{code}", structure) for p in people[1:]]
        return rows

    def instructors(self, club: Structure, pool: list[int]) -> list[dict[str, object]]:
        count = max(1, len(pool) // 10)
        levels = ("e1", "e1", "e2", "e2", "e2", "e3", "e3", "e4", "mf1", "mf2")
        return [self._mandate(p, f"instructor_{self.rng.choice(levels)}", club) for p in self.rng.sample(pool, count)]

    def insert_mandates(self, rows: list[dict[str, object]]) -> None:
        seen = set()
        unique = []
        for row in rows:
            key = (row["member"], row["role"], row["structure"], row["starts_on"])
            if key not in seen:
                seen.add(key)
                unique.append(row)
        for batch in batched(unique, 1000):
            Mandate.insert_many(batch).execute()
        self.summary.mandates = len(unique)


def build(settings: Settings, *, members: int = 2000, seed: int = 2026,
          progress: Callable[[str], object] = lambda _: None) -> Summary:
    """Build the demo federation into an empty database (``AlreadyPopulated`` otherwise)."""
    if not is_empty():
        raise AlreadyPopulated("the database already has members: the demo federation is only built into an "
                               "empty database (use a new PALANQUEE_INSTANCE or database)")
    builder = _Builder(settings, members, seed, progress)
    with database.atomic():
        builder.roles_table()
        fed, regions, codeps, clubs = builder.structures()
        progress(f"  {builder.summary.structures} structures")
        by_club = builder.insert_members(builder.member_rows(clubs))
        builder.insert_mandates(builder.mandate_rows(fed, regions, codeps, clubs, by_club))
        _accounts(builder, fed, regions, clubs)
        progress(f"  {Mandate.select().count()} mandates")  # the demo accounts' included, as the summary says
        _lists(builder, fed, regions)
    return existing_summary()  # counted from the database: what every later start prints too


def _accounts(builder: _Builder, fed: Structure, regions: list[Structure], clubs: list[Structure]) -> None:
    """Three people with known logins: a member (board + instructor), regional staff, a federation admin."""
    provence = regions[0]
    club13 = next(c for c in clubs if c.department == "13")
    password = hash_password(DEMO_PASSWORD)
    people = (
        (MEMBER_LICENCE, "Élodie", "Marchetti", DEMO_POSTER),
        (STAFF_LICENCE, "Karim", "Benali", "karim.benali@free.fr"),
        (ADMIN_LICENCE, "Sophie", "Lemoine", "sophie.lemoine@ffessm-demo.fr"),
    )
    created = []
    for licence, first, last, email in people:
        member = Member(licence_number=licence, first_name=first, last_name=last, club=club13,
                        licence_season=builder.season_start.year, licence_valid_until=builder.season_end,
                        password_hash=password, created_at=builder.now)
        member.set_email(email)
        member.save(force_insert=True)
        created.append(member)
    member, staff, admin = created
    Mandate.insert_many([
        builder._mandate(member.id, "board_member", provence), builder._mandate(member.id, "instructor_e2", club13),
        builder._mandate(member.id, "treasurer", club13),
    ]).execute()
    StaffScope.create(member=staff, structure=provence, granted_at=builder.now)
    StaffScope.create(member=admin, structure=fed, granted_at=builder.now)


def _criterion(ml: MailingList, structure: Structure, roles: list[str], roles_by_code: dict[str, Role], *,
               subtree: bool = False, kind: str | None = None) -> None:
    criterion = ListCriterion.create(mailing_list=ml, structure=structure, include_subtree=subtree,
                                     structure_kind=kind, require_valid_licence=True)
    CriterionRole.insert_many([dict(criterion=criterion.id, role=roles_by_code[c].id) for c in roles]).execute()


def _lists(builder: _Builder, fed: Structure, regions: list[Structure]) -> None:
    now, roles = builder.now, builder.roles
    provence = regions[0]
    codep13 = Structure.get(Structure.code == "CD-13")
    on = Domain.create(name=LIST_DOMAIN, structure=fed, lists_enabled=True, created_at=now)
    off = Domain.create(name=OFF_DOMAIN, structure=codep13, lists_enabled=False, created_at=now)
    board_roles = [code for code, *_r in BOARD]

    def make(local: str, name: str, domain: Domain, structure: Structure, kind: str = ListKind.ROLE,
             **options: object) -> MailingList:
        ml = MailingList.create(domain=domain, local_part=local, name=name, structure=structure, kind=kind,
                                created_at=now, **options)
        return ml

    # An unsigned post (swaks from this machine) is confirmed by a link mailed to its author (the capture).
    cd = make("comite_directeur.comite", "Comité directeur — Comité régional Provence", on, provence,
              sender_check="confirm")
    _criterion(cd, provence, board_roles, roles)
    presidents = make("presidents.clubs13", "Présidents des clubs des Bouches-du-Rhône", on, codep13)
    _criterion(presidents, codep13, ["president"], roles, subtree=True, kind=StructureKind.CLUB)
    instructors = make("moniteurs.provence", "Moniteurs de Provence", on, provence, post_policy="roles")
    _criterion(instructors, provence, [f"instructor_{c}" for c, _n in INSTRUCTORS], roles, subtree=True)
    technique = make("commission.technique", "Commission technique nationale et régionale", on, fed)
    _criterion(technique, fed, ["commission_president_technique", "commission_member_technique"], roles,
               subtree=True, kind=None)
    everyone = make("licencies.provence", "Tous les licenciés de Provence", on, provence, post_policy="moderators")
    _criterion(everyone, provence, [], roles, subtree=True)
    national = make("licencies.national", "Tous les licenciés — lettre fédérale", on, fed, post_policy="moderators")
    _criterion(national, fed, [], roles, subtree=True)
    guests = make("invites.ag2026", "Invités de l’assemblée générale 2026", on, fed, kind=ListKind.STATIC)
    for address in ("presse@ville-marseille.fr", "Contact@Ocean-Partenaires.fr", "elodie.marchetti@orange.fr"):
        Subscription.create(mailing_list=guests, email=address, email_key=address.lower(), created_at=now,
                            member=Member.using_address(address).first())
    local = make("bureau.codep13", "Bureau du CODEP 13", off, codep13)
    _criterion(local, codep13, board_roles[:4], roles)


def existing_summary() -> Summary:
    """What a populated demo database holds (for ``palanquee demo`` started a second time)."""
    summary = Summary(members=Member.select().count(), structures=Structure.select().count(),
                      mandates=Mandate.select().count())
    summary.lists = [ml.address for ml in MailingList.select(MailingList, Domain).join(Domain)
                     .where(MailingList.deleted_at.is_null()).order_by(MailingList.id)]
    for licence, what in ACCOUNTS.items():
        if Member.select().where(Member.licence_number == licence).exists():
            summary.accounts.append((what, licence, DEMO_PASSWORD))
    return summary


def prepare_capture(settings: Settings) -> None:
    """Make the capture Maildir now, so that the folder the demo prints exists before the first message."""
    for sub in ("tmp", "new", "cur"):
        (settings.capture_dir / sub).mkdir(parents=True, exist_ok=True)


def describe(summary: Summary) -> str:
    lines = [f"demo federation: {summary.members} members, {summary.structures} structures, "
             f"{summary.mandates} mandates"]
    lines += [f"  list: {address}" for address in summary.lists]
    lines += [f"  login ({what}): {licence} / {password}" for what, licence, password in summary.accounts]
    return "\n".join(lines)
