"""The federation's directory: structures (a tree), members, roles, mandates, address changes, staff scopes.

Structures carry a materialised path of fixed-width decimal segments, so "this structure and every
structure below it" is one indexed range scan that sorts the same way under any collation.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

import peewee as pw
from email_validator import EmailNotValidError, validate_email

from engine.db import BaseModel

PATH_SEGMENT = 8  # digits per level: ids up to 99,999,999


def email_key(address: str | None) -> str | None:
    """The comparison key of an address: stored as typed, compared case-insensitively."""
    return address.strip().lower() if address and address.strip() else None


def valid_address(text: str) -> str | None:
    """The address as typed when it is a syntactically valid e-mail address (no DNS look-up), else None."""
    value = text.strip()
    if not value or len(value) > 254 or any(ch.isspace() for ch in value):
        return None
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return None
    return value


class StructureKind:
    FEDERATION = "federation"
    REGIONAL = "regional"
    DEPARTMENTAL = "departmental"
    CLUB = "club"
    ALL = (FEDERATION, REGIONAL, DEPARTMENTAL, CLUB)


class Structure(BaseModel):
    """A node of the federation: national federation, regional or departmental committee, club."""

    code = pw.CharField(max_length=32, unique=True)
    name = pw.CharField(max_length=200)
    kind = pw.CharField(max_length=16, index=True)
    parent: pw.ForeignKeyField[Structure | None] = pw.ForeignKeyField(
        "self", null=True, backref="children", on_delete="RESTRICT")
    path = pw.CharField(max_length=255, index=True, default="")
    depth = pw.SmallIntegerField(default=0)
    department = pw.CharField(max_length=3, null=True)  # département code for CODEPs and clubs

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        parent_id: pw.ForeignKeyField[int | None]

    @staticmethod
    def segment(structure_id: int) -> str:
        return str(structure_id).zfill(PATH_SEGMENT)

    def subtree_bounds(self) -> tuple[str, str]:
        """Half-open range [low, high) of paths of this structure and everything below it."""
        low = self.path
        # Increment the last segment as a number: every descendant's path starts with ``low``,
        # and ``low`` with its last segment plus one sorts just after all of them.
        last = int(low[-PATH_SEGMENT:]) + 1
        high = low[:-PATH_SEGMENT] + str(last).zfill(PATH_SEGMENT)
        return low, high

    def subtree(self) -> pw.ModelSelect[Structure]:
        """This structure and every structure below it, in one indexed query."""
        low, high = self.subtree_bounds()
        return Structure.select().where((Structure.path >= low) & (Structure.path < high))

    def ancestors(self) -> pw.ModelSelect[Structure]:
        """This structure and every structure above it, root first."""
        paths = [self.path[: i + PATH_SEGMENT] for i in range(0, len(self.path), PATH_SEGMENT)]
        return Structure.select().where(Structure.path.in_(paths)).order_by(Structure.depth)

    def is_within(self, other: Structure) -> bool:
        return self.path.startswith(other.path)

    @classmethod
    def create_node(cls, **fields: object) -> Structure:
        """Create a structure and set its path from its parent's (ids are only known after insert)."""
        node = cls.create(**fields)
        node.set_path()
        node.save(only=[cls.path, cls.depth])
        return node

    def set_path(self) -> None:
        parent_path = self.parent.path if self.parent is not None else ""
        self.path = parent_path + self.segment(self.id)
        self.depth = len(self.path) // PATH_SEGMENT - 1


class Role(BaseModel):
    """A role members hold in structures: président, secrétaire, membre d'une commission, moniteur…"""

    code = pw.CharField(max_length=48, unique=True)
    name_fr = pw.CharField(max_length=120)
    name_en = pw.CharField(max_length=120)
    category = pw.CharField(max_length=16, default="board")  # board, commission, instructor
    rank = pw.SmallIntegerField(default=100)  # display order

    def name(self, language: str) -> str:
        return self.name_en if language == "en" else self.name_fr


class Member(BaseModel):
    """A licensee. ``email`` is the effective address: the only one the list engine sends to."""

    licence_number = pw.CharField(max_length=32, unique=True)
    first_name = pw.CharField(max_length=100)
    last_name = pw.CharField(max_length=100)
    email = pw.CharField(max_length=254, null=True)
    email_key = pw.CharField(max_length=254, null=True, index=True)
    email_set_by_member_at = pw.DateTimeField(null=True)  # an import does not overwrite it
    email_imported_at = pw.DateTimeField(null=True)  # an import last wrote or confirmed the address
    club = pw.ForeignKeyField(Structure, null=True, backref="members", on_delete="SET NULL")
    licence_season = pw.IntegerField(null=True)
    licence_valid_until = pw.DateField(null=True, index=True)
    password_hash = pw.CharField(max_length=255, null=True)
    auth_version = pw.IntegerField(default=0)  # bumped to revoke sessions and single-use links
    language = pw.CharField(max_length=5, null=True)
    created_at = pw.DateTimeField()

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        club_id: pw.ForeignKeyField[int | None]

    # flask-login protocol (kept here so the portal needs no wrapper class)
    is_active = True
    is_anonymous = False

    @property
    def is_authenticated(self) -> bool:
        return True

    def get_id(self) -> str:
        """Session identity; changing ``auth_version`` invalidates every session of this member."""
        return f"{self.id}:{self.auth_version}"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def set_email(self, address: str | None) -> None:
        self.email = address.strip() if address and address.strip() else None
        self.email_key = email_key(address)

    def licence_valid_on(self, day: date) -> bool:
        return self.licence_valid_until is not None and self.licence_valid_until >= day

    @classmethod
    def using_address(cls, address: str) -> pw.ModelSelect[Member]:
        """Members whose effective address is ``address``, compared case-insensitively (indexed)."""
        key = email_key(address)
        if key is None:  # "== None" would match every member without an address
            return cls.select().where(pw.SQL("1 = 0"))
        return cls.select().where(cls.email_key == key)


class Mandate(BaseModel):
    """A member holds a role in a structure from ``starts_on`` to ``ends_on`` (inclusive, open if null)."""

    member = pw.ForeignKeyField(Member, backref="mandates", on_delete="CASCADE")
    role = pw.ForeignKeyField(Role, backref="mandates", on_delete="RESTRICT")
    structure = pw.ForeignKeyField(Structure, backref="mandates", on_delete="CASCADE")
    starts_on = pw.DateField()
    ends_on = pw.DateField(null=True)
    source = pw.CharField(max_length=16, default="import")

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        member_id: pw.ForeignKeyField[int]
        role_id: pw.ForeignKeyField[int]
        structure_id: pw.ForeignKeyField[int]

    class Meta:
        indexes = (
            # resolving a role-based list: role first, then the structure range
            (("role", "structure"), False),
            (("member", "role", "structure", "starts_on"), True),
        )

    @classmethod
    def current(cls, day: date) -> pw.Expression:
        """Condition: the mandate is in force on ``day``."""
        return (cls.starts_on <= day) & (cls.ends_on.is_null() | (cls.ends_on >= day))


class EmailChange(BaseModel):
    """A member's request to change their address: requested, verified, then applied at ``effective_at``."""

    member = pw.ForeignKeyField(Member, backref="email_changes", on_delete="CASCADE")
    old_email = pw.CharField(max_length=254, null=True)
    new_email = pw.CharField(max_length=254)
    requested_at = pw.DateTimeField()
    verified_at = pw.DateTimeField(null=True)
    effective_at = pw.DateTimeField(null=True, index=True)
    cancelled_at = pw.DateTimeField(null=True)
    applied_at = pw.DateTimeField(null=True)
    requested_ip = pw.CharField(max_length=64, null=True)
    # "member" (Mon espace: confirmed by the new address), or "staff" / "import": imposed and applied at once,
    # the old address told with a link that restores it. An empty new_email: the address was removed.
    source = pw.CharField(max_length=16, default="member")

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        member_id: pw.ForeignKeyField[int]


class StaffScope(BaseModel):
    """A member is staff for a structure and everything below it; on the root, a federation admin."""

    member = pw.ForeignKeyField(Member, backref="staff_scopes", on_delete="CASCADE")
    structure = pw.ForeignKeyField(Structure, backref="staff_scopes", on_delete="CASCADE")
    granted_at = pw.DateTimeField()

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        member_id: pw.ForeignKeyField[int]
        structure_id: pw.ForeignKeyField[int]

    class Meta:
        indexes = ((("member", "structure"), True),)


class RateEvent(BaseModel):
    """One counted event for rate limiting (a failed login, a reset mail), under a key such as ``ip:…``.

    Kept in the database so that every portal process shares the counts (engine/directory/accounts.py).
    """

    key = pw.CharField(max_length=300)
    at = pw.DateTimeField(index=True)

    class Meta:
        indexes = ((("key", "at"), False),)


class AuthSession(BaseModel):
    """One login: the portal's session cookie names it by a random key (stored here hashed). Logging out ends
    it; it also ends at ``expires_at``, or when the member's ``auth_version`` moves (password set, "this was
    not me"). engine/directory/sessions.py."""

    key_hash = pw.CharField(max_length=64, unique=True)
    member = pw.ForeignKeyField(Member, backref="sessions", on_delete="CASCADE")
    auth_version = pw.IntegerField()
    remember = pw.BooleanField(default=False)
    created_at = pw.DateTimeField()
    expires_at = pw.DateTimeField(index=True)
    ended_at = pw.DateTimeField(null=True)
    ip = pw.CharField(max_length=64, null=True)


MODELS = [Structure, Role, Member, Mandate, EmailChange, StaffScope, RateEvent, AuthSession]
