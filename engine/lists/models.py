"""Mail domains, mailing lists, their criteria (who receives), static subscribers, opt-outs and posting rights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import peewee as pw

from engine.db import BaseModel
from engine.directory.models import Member, Role, Structure


class Domain(BaseModel):
    """A mail domain lists live under, with the per-domain switch of the list service."""

    name = pw.CharField(max_length=253, unique=True)  # stored lower-case, A-labels
    structure = pw.ForeignKeyField(Structure, backref="domains", on_delete="RESTRICT")
    lists_enabled = pw.BooleanField(default=True)
    created_at = pw.DateTimeField()

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        structure_id: pw.ForeignKeyField[int]


class ListKind:
    ROLE = "role"  # members computed from criteria (may also have static subscribers)
    STATIC = "static"  # addresses typed one per line
    ALL = (ROLE, STATIC)


class PostPolicy:
    """Who may post to a list; the engine's posting rules read this."""

    MEMBERS = "members"  # anyone the list reaches
    ROLES = "roles"  # holders of the roles in PostingPermission rows
    ADDRESSES = "addresses"  # the addresses in PostingPermission rows
    MODERATORS = "moderators"  # announce list: only moderators and owner
    ANYONE = "anyone"
    ALL = (MEMBERS, ROLES, ADDRESSES, MODERATORS, ANYONE)


# Deliverability options of a list (docs/deliverability.md); the engine's posting code reads them.
DMARC_MODES = ("always", "automatic", "never")
DMARC_AUTHOR_IN = ("reply-to", "cc")
SENDER_CHECKS = ("hold", "confirm", "off")


class MailingList(BaseModel):
    """``local_part@domain``. ``deleted_at`` set: refuses mail at once; history is kept."""

    domain = pw.ForeignKeyField(Domain, backref="lists", on_delete="RESTRICT")
    local_part = pw.CharField(max_length=64)
    name = pw.CharField(max_length=200)
    description = pw.TextField(default="")
    kind = pw.CharField(max_length=16, default=ListKind.ROLE)
    structure = pw.ForeignKeyField(Structure, backref="lists", on_delete="RESTRICT")
    owner = pw.ForeignKeyField(Member, null=True, backref="owned_lists", on_delete="SET NULL")
    post_policy = pw.CharField(max_length=16, default=PostPolicy.MEMBERS)
    hold_unauthorised = pw.BooleanField(default=True)  # False: refuse with a notice
    subject_prefix = pw.CharField(max_length=64, default="")
    reply_to = pw.CharField(max_length=16, default="author")  # author, list
    # Deliverability (docs/deliverability.md): DMARC From rewriting, where the author goes, ARC sealing,
    # and what happens to a post from an allowed address that fails authentication (hold, confirm, off).
    dmarc_mode = pw.CharField(max_length=16, default="always")  # automatic, always, never
    dmarc_author_in = pw.CharField(max_length=16, default="reply-to")  # reply-to, cc
    arc_seal = pw.BooleanField(default=False)
    sender_check = pw.CharField(max_length=16, default="hold")  # hold, confirm, off
    created_at = pw.DateTimeField()
    deleted_at = pw.DateTimeField(null=True)
    last_posted_at = pw.DateTimeField(null=True)
    bounce_threshold = pw.FloatField(null=True)  # bounce score that disables an address; None: the setting

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        domain_id: pw.ForeignKeyField[int]
        structure_id: pw.ForeignKeyField[int]
        owner_id: pw.ForeignKeyField[int | None]

    class Meta:
        indexes = ((("domain", "local_part"), True),)

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain.name}"


class ListCriterion(BaseModel):
    """Holders of some roles in a structure (and optionally below it, of one kind of structure)."""

    mailing_list = pw.ForeignKeyField(MailingList, backref="criteria", on_delete="CASCADE")
    structure = pw.ForeignKeyField(Structure, backref="criteria", on_delete="CASCADE")
    include_subtree = pw.BooleanField(default=False)
    structure_kind = pw.CharField(max_length=16, null=True)  # e.g. only clubs below a CODEP
    require_valid_licence = pw.BooleanField(default=True)

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        mailing_list_id: pw.ForeignKeyField[int]
        structure_id: pw.ForeignKeyField[int]


class CriterionRole(BaseModel):
    criterion = pw.ForeignKeyField(ListCriterion, backref="role_links", on_delete="CASCADE")
    role = pw.ForeignKeyField(Role, backref="criterion_links", on_delete="CASCADE")

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        criterion_id: pw.ForeignKeyField[int]
        role_id: pw.ForeignKeyField[int]

    class Meta:
        indexes = ((("criterion", "role"), True),)


class Subscription(BaseModel):
    """A static subscriber typed by staff (an address, linked to a member when one uses it)."""

    mailing_list = pw.ForeignKeyField(MailingList, backref="subscriptions", on_delete="CASCADE")
    email = pw.CharField(max_length=254)
    email_key = pw.CharField(max_length=254)
    member = pw.ForeignKeyField(Member, null=True, backref="subscriptions", on_delete="SET NULL")
    created_at = pw.DateTimeField()
    source = pw.CharField(max_length=16, default="staff")

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        mailing_list_id: pw.ForeignKeyField[int]
        member_id: pw.ForeignKeyField[int | None]

    class Meta:
        indexes = (
            (("mailing_list", "email_key"), True),
            (("email_key",), False),  # a member's subscriptions by address, across lists (Mes listes)
        )


class OptOut(BaseModel):
    """Someone left a list; wins over every criterion and subscription until removed (rejoin)."""

    mailing_list = pw.ForeignKeyField(MailingList, backref="opt_outs", on_delete="CASCADE")
    member = pw.ForeignKeyField(Member, null=True, backref="opt_outs", on_delete="CASCADE")
    email_key = pw.CharField(max_length=254, null=True)  # for addresses that are no member's
    created_at = pw.DateTimeField()
    source = pw.CharField(max_length=16)  # footer, one-click, mailto, espace, staff, bounce

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        mailing_list_id: pw.ForeignKeyField[int]
        member_id: pw.ForeignKeyField[int | None]

    class Meta:
        indexes = (
            (("mailing_list", "member"), False),
            (("mailing_list", "email_key"), False),
            (("email_key",), False),  # a member's opt-outs by address, across lists (Mes listes)
        )


class ListModerator(BaseModel):
    mailing_list = pw.ForeignKeyField(MailingList, backref="moderators", on_delete="CASCADE")
    member = pw.ForeignKeyField(Member, null=True, backref="moderated_lists", on_delete="CASCADE")
    email = pw.CharField(max_length=254, null=True)

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        mailing_list_id: pw.ForeignKeyField[int]
        member_id: pw.ForeignKeyField[int | None]


class PostingPermission(BaseModel):
    """With post policy ``roles``: a role (in a structure scope); with ``addresses``: an address."""

    mailing_list = pw.ForeignKeyField(MailingList, backref="posting_permissions", on_delete="CASCADE")
    role = pw.ForeignKeyField(Role, null=True, on_delete="CASCADE")
    structure = pw.ForeignKeyField(Structure, null=True, on_delete="CASCADE")
    email_key = pw.CharField(max_length=254, null=True)

    if TYPE_CHECKING:  # the ids peewee adds beside each foreign key
        mailing_list_id: pw.ForeignKeyField[int]
        role_id: pw.ForeignKeyField[int | None]
        structure_id: pw.ForeignKeyField[int | None]


MODELS = [
    Domain, MailingList, ListCriterion, CriterionRole, Subscription, OptOut, ListModerator,
    PostingPermission,
]
