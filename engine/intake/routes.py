"""Which recipient addresses the intake accepts: list addresses and their companions, nothing else.

A table of sub-address routes (``LIST-request``, ``-owner``, ``-unsubscribe``, ``-bounces+TOKEN``)
read in one place, and two addresses per list domain: ``bounces+TOKEN@`` and ``fbl@`` (complaint reports). Anything else is refused at RCPT with a 5xx, so the engine is never an open
relay and never accepts mail it would have to bounce later (backscatter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import peewee as pw

from engine import statements
from engine.bounces import verp
from engine.bounces.complaints import FEEDBACK_LOCAL_PART
from engine.lists.models import Domain, MailingList


class Companion:
    POST = "post"
    REQUEST = "request"
    OWNER = "owner"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCES = "bounces"
    FEEDBACK = "feedback"  # fbl@DOMAIN: complaint reports (ARF) of feedback loops, engine/bounces/complaints.py


# (suffix of the local part, companion, takes a +TOKEN)
SUFFIXES: tuple[tuple[str, str, bool], ...] = (
    ("-bounces", Companion.BOUNCES, True),
    ("-request", Companion.REQUEST, False),
    ("-owner", Companion.OWNER, False),
    ("-unsubscribe", Companion.UNSUBSCRIBE, False),
    ("-leave", Companion.UNSUBSCRIBE, False),
)


@dataclass(frozen=True)
class Route:
    address: str
    list_id: int
    companion: str
    delivery_id: int | None = None  # for -bounces+TOKEN (None for -bounces alone: a notice's bounce)
    domain_id: int | None = None  # for fbl@DOMAIN, whose list_id is 0: it names no list


class Refused(Exception):
    """The recipient is refused; ``reply`` is the full SMTP reply line."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def has_controls(address: str) -> bool:
    """Control characters: never in an address (RFC 5321 §4.1.2), and a NUL cannot even be stored in
    PostgreSQL, so such an address must be refused at once, never answered 451."""
    return bool(_CONTROLS.search(address))


def _split(address: str) -> tuple[str, str]:
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or not local or not domain or has_controls(local + domain) or " " in local + domain:
        raise Refused("553 5.1.3 Bad recipient address syntax")
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise Refused("553 5.1.3 Bad recipient domain") from exc
    return local.lower(), domain


def _candidates(local: str) -> list[tuple[str, str, str | None]]:
    """(list local part, companion, token) readings of a local part, the plain list first."""
    readings: list[tuple[str, str, str | None]] = [(local, Companion.POST, None)]
    base, plus, token = local.partition("+")
    for suffix, companion, takes_token in SUFFIXES:
        if takes_token and plus and base.endswith(suffix):
            readings.append((base[: -len(suffix)], companion, token))
        elif not plus and local.endswith(suffix):  # -bounces alone: the sender of the engine's notices
            readings.append((local[: -len(suffix)], companion, None))
    return readings


_by_readings: dict[int, statements.Select[MailingList]] = {}


def _lists(readings: int) -> statements.Select[MailingList]:
    """The lists (with their domain) of a domain named by any of ``readings`` local parts: compiled once."""
    if readings not in _by_readings:
        _by_readings[readings] = statements.Select(
            lambda domain, *locals_: MailingList.select(MailingList, Domain).join(Domain).where(
                (Domain.name == domain) & pw.fn.LOWER(MailingList.local_part).in_(list(locals_))),
            Domain.name, *[None] * readings)
    return _by_readings[readings]


def route(address: str, verp_key: bytes) -> Route:
    """The route for ``address``, or ``Refused`` with the reply naming why."""
    return find(address, verp_key)[0]


def find(address: str, verp_key: bytes) -> tuple[Route, MailingList | None]:
    """The route for ``address`` and its list (with its domain loaded), or ``Refused``. One query for a
    list's address or companion: every reading of the local part is looked up at once, the first that
    names a list wins (the plain list first, as ``_candidates`` orders them)."""
    local, domain_name = _split(address)
    base, plus, shared_token = local.partition("+")
    if not (plus and base == verp.SHARED_LOCAL_PART):
        readings = _candidates(local)
        found = {ml.local_part.lower(): ml for ml in _lists(len(readings))(domain_name, *[r[0] for r in readings])}
        for list_local, companion, token in readings:
            if list_local in found:
                return _list_route(address, found[list_local], companion, token, verp_key), found[list_local]
    domain = Domain.get_or_none(Domain.name == domain_name)
    if domain is None:
        raise Refused("550 5.7.1 Relaying denied: this server only accepts mail for its mailing lists")
    if plus and base == verp.SHARED_LOCAL_PART:
        return _shared_bounce(address, domain, shared_token, verp_key), None
    if local == FEEDBACK_LOCAL_PART:  # after the lists: an older list of that name keeps its address
        return _feedback(address, domain), None
    raise Refused(f"550 5.1.1 <{address}>: no such mailing list")


def _list_route(address: str, mailing_list: MailingList, companion: str, token: str | None,
                verp_key: bytes) -> Route:
    domain = mailing_list.domain
    if mailing_list.deleted_at is not None:
        raise Refused(f"550 5.1.1 <{address}>: this mailing list has been deleted")
    if not domain.lists_enabled:
        raise Refused(f"550 5.2.1 <{address}>: the mailing-list service is switched off for {domain.name}")
    delivery_id = None
    if companion == Companion.BOUNCES and token is not None:  # a copy's VERP address must be genuine
        delivery_id = verp.read_token(verp_key, token)
        if delivery_id is None:
            raise Refused(f"550 5.1.1 <{address}>: unknown bounce address")
    return Route(address, mailing_list.id, companion, delivery_id)


def _shared_bounce(address: str, domain: Domain, token: str, verp_key: bytes) -> Route:
    """``bounces+TOKEN@domain``, the return path of lists whose own would pass 64 octets: the token's
    delivery names the list, which must be of this domain."""
    from engine.outbound.models import Delivery
    from engine.posting.models import Message

    delivery_id = verp.read_token(verp_key, token)
    row = None if delivery_id is None else (
        MailingList.select(MailingList.id, MailingList.deleted_at).join(Message)
        .join(Delivery, on=(Delivery.message == Message.id))
        .where((Delivery.id == delivery_id) & (MailingList.domain == domain.id)).first())
    if row is None or row.deleted_at is not None:
        raise Refused(f"550 5.1.1 <{address}>: unknown bounce address")
    if not domain.lists_enabled:
        raise Refused(f"550 5.2.1 <{address}>: the mailing-list service is switched off for {domain.name}")
    return Route(address, row.id, Companion.BOUNCES, delivery_id)


def _feedback(address: str, domain: Domain) -> Route:
    """``fbl@domain``: one address per list domain for the feedback loops' complaint reports. Only the engine's
    own domains have one (the domain was found), so it relays nothing."""
    if not domain.lists_enabled:
        raise Refused(f"550 5.2.1 <{address}>: the mailing-list service is switched off for {domain.name}")
    return Route(address, 0, Companion.FEEDBACK, domain_id=domain.id)
