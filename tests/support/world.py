"""A demo federation that has lived a little: every kind of audit event, opt-outs from every source, held,
refused, discarded and sent messages, captured mail, a pending address change, and every mail the product
sends itself. Built through the engine's own functions, for tests that render every page and every mail."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from email.message import EmailMessage

from engine import clock, demo, tokens
from engine.bounces import member as bounce_member
from engine.config import Settings
from engine.directory import accounts, email_change, importer, passwords, staff_changes
from engine.directory.models import Member, Role, Structure
from engine.lists import admin, mailto_unsubscribe, optouts, preview, subscribers
from engine.lists.authority import rights_beyond
from engine.lists.models import Domain, ListKind, MailingList
from engine.outbound import mail
from engine.outbound.models import Delivery, DeliveryState
from engine.posting import confirmation, moderation, policy
from engine.posting.models import Message, MessageState
from tests import factories as f

POST = ("From: Paul Durand <paul.durand@example.fr>\r\nTo: {to}\r\nSubject: Sortie du dimanche\r\n"
        "Message-ID: <{n}@example.fr>\r\nDate: Thu, 26 Nov 2026 13:05:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nRendez-vous au port à huit heures.\r\n")


@dataclass
class World:
    """What the pages need in their URLs, and the tokens of the public links."""

    settings: Settings
    role_list: MailingList
    static_list: MailingList
    held: Message
    sent: Message
    captured_key: str
    waiting: Message | None = None  # held until its author confirms it
    tokens: dict[str, str] = field(default_factory=dict)


def _message(ml: MailingList, n: int, state: str, reason: str = "", author: str = "paul.durand@example.fr") -> Message:
    raw = POST.format(to=ml.address, n=n).encode()
    return Message.create(mailing_list=ml, author=author, envelope_sender=author, subject="Sortie du dimanche",
                          content=raw, size=len(raw), state=state, reason=reason, received_at=clock.now())


def build(settings: Settings) -> World:
    """Build it into an empty database (the demo's people: a member, a regional staff, a federal admin)."""
    f.cheap_password_hashing()
    demo.build(settings, members=60)
    staff = Member.get(Member.licence_number == demo.STAFF_LICENCE)
    admin_ = Member.get(Member.licence_number == demo.ADMIN_LICENCE)
    elodie = Member.get(Member.licence_number == demo.MEMBER_LICENCE)
    role_list = MailingList.get(MailingList.local_part == "comite_directeur.comite")
    static_list = MailingList.get(MailingList.local_part == "invites.ag2026")
    _staff_actions(settings, staff, admin_)
    _member_actions(settings, elodie, role_list, static_list)
    held, sent = _messages(settings, role_list)
    waiting = Message.get((Message.reason == policy.RULES[-1][3]) & (Message.state == MessageState.HELD))
    key = _captured(settings, role_list)
    world = World(settings, role_list, static_list, held, sent, key, waiting=waiting)
    _links(world, elodie)
    return world


def _staff_actions(settings: Settings, staff: Member, admin_: Member) -> None:
    provence = Structure.get(Structure.code == "CR-PROV")
    domain = Domain.get(Domain.name == demo.LIST_DOMAIN)
    created = admin.create_list(settings, staff, admin.NewList(
        domain.id, "sorties.provence", "Sorties en mer", provence.id, kind=ListKind.STATIC, owner_id=staff.id,
        subscribers="un@example.org\npas une adresse\ndeux@example.org", notify=True))
    ml = created.mailing_list
    admin.update_settings(staff, ml, name="Sorties en mer de Provence", subject_prefix="[Sorties]", reply_to="list",
                          owner_id=staff.id)
    subscribers.add_subscribers(staff, ml, "trois@example.org")
    subscribers.remove_subscribers(staff, ml, "un@example.org")
    board = Role.get(Role.code == "president")
    admin.set_posting_rules(staff, ml, admin.PostingRules("roles", True, (board.id,), provence.id, "",
                                                          demo.STAFF_LICENCE))
    role_list = admin.create_list(settings, staff, admin.NewList(domain.id, "presidents.provence", "Présidents",
                                                                provence.id, kind=ListKind.ROLE)).mailing_list
    preview.replace_criteria(staff, role_list, [preview.CriterionSpec(provence.id, (board.id,), True, "club", True)])
    admin.delete_lists(admin_, [role_list.id])
    admin.purge_list(admin_, MailingList.get_by_id(role_list.id))
    off = Domain.get(Domain.name == demo.OFF_DOMAIN)
    admin.set_domain_enabled(admin_, off, True)
    admin.set_domain_enabled(admin_, off, False)
    csv = ("numero_licence;nom;prenom;email;club;saison;roles\n"
           "A-13-200001;Rinaldi;Marc;marc.rinaldi@orange.fr;CLUB-13-0001;2026;president@CLUB-13-0001\n"
           "A-13-200001;Doublon;Marc;;CLUB-13-0001;2026;\n")
    importer.import_members(settings, io.StringIO(csv), actor=admin_, source="licencies.csv",
                            rights_beyond=rights_beyond)
    importer.import_members(settings, io.StringIO(csv.replace("Rinaldi", "Rinaldi-Fabre")), actor=None,
                            rights_beyond=rights_beyond)
    someone = Member.get(Member.licence_number == "A-13-200001")
    staff_changes.impose_address(settings, admin_, someone, "marc.rinaldi@free.fr", rights_beyond=rights_beyond)


def _member_actions(settings: Settings, elodie: Member, role_list: MailingList, static_list: MailingList) -> None:
    accounts.login(demo.MEMBER_LICENCE, "pas-le-bon", ip="192.0.2.1")
    accounts.login(demo.MEMBER_LICENCE, demo.DEMO_PASSWORD, ip="192.0.2.1")
    passwords.request_reset(settings, demo.MEMBER_LICENCE)
    newcomer = Member.get(Member.licence_number == "A-13-200001")
    passwords.request_reset(settings, newcomer.licence_number)  # no password yet: the activation mail
    passwords.set_password_with_token(settings, passwords.make_reset_token(settings, newcomer), "une-phrase-facile")
    change = email_change.request_change(settings, elodie, "elodie.nouvelle@example.org")
    email_change.confirm(settings, email_change.confirm_url(settings, change).rsplit("/", 1)[1])
    elodie = Member.get_by_id(elodie.id)
    email_change.request_change(settings, elodie, "autre@example.org")
    email_change.cancel_pending(settings, elodie)
    email_change.request_change(settings, elodie, "elodie.marchetti@orange.fr")  # left pending
    optouts.leave_from_espace(elodie, role_list.id)
    optouts.rejoin_from_espace(elodie, role_list.id)
    national = MailingList.get(MailingList.local_part == "licencies.national")
    optouts.leave_from_espace(elodie, national.id)
    provence = MailingList.get(MailingList.local_part == "licencies.provence")
    others = list(Member.select().where(Member.email.is_null(False)).limit(2))
    for member, source in zip(others, ("footer", "one-click"), strict=True):
        optouts.unsubscribe_with_token(settings, tokens.make_unsubscribe_token(settings, provence.id, [member.id]),
                                       source)
    token = tokens.make_unsubscribe_token(settings, static_list.id, email_key="presse@ville-marseille.fr")
    headers = EmailMessage()
    headers["Subject"] = f"unsubscribe {token}"
    mailto_unsubscribe.handle(settings, static_list.id, "presse@ville-marseille.fr", headers)


def _messages(settings: Settings, ml: MailingList) -> tuple[Message, Message]:
    held = _message(ml, 1, MessageState.HELD, policy.HELD_REASON)
    moderation.request(settings, held)
    approved = _message(ml, 2, MessageState.HELD, policy.HELD_REASON)
    moderation.request(settings, approved)
    moderation.approve(settings, approved, None, via="elodie.marchetti@orange.fr")
    refused = _message(ml, 3, MessageState.HELD, policy.HELD_REASON)
    moderation.reject(settings, refused, None, "Hors sujet pour cette liste", via="secretariat@example.org")
    discarded = _message(ml, 4, MessageState.DISCARDED, policy.RULES[2][3], author="mailer-daemon@example.org")
    moderation.send_help(settings, ml, "curieux@example.org")
    waiting = policy.RULES[-1][3]  # the From was not authenticated: its author is asked to confirm
    for n in (6, 7):
        unconfirmed = _message(ml, n, MessageState.HELD, waiting)
        confirmation.request(settings, unconfirmed)
    confirmation.confirm(settings, unconfirmed)
    sent = _message(ml, 5, MessageState.SENDING)
    now = clock.now()
    for address, state, reply in (("a@example.org", DeliveryState.SENT, "250 2.0.0 Ok"),
                                  ("b@example.org", DeliveryState.FAILED, "550 5.1.1 No such user"),
                                  ("c@example.org", DeliveryState.DEFERRED, "451 4.7.1 Try again later")):
        Delivery.create(message=sent, address=address, state=state, last_reply=reply, attempts=1,
                        next_attempt_at=now, updated_at=now)
    Message.update(recipient_count=3).where(Message.id == sent.id).execute()
    del discarded
    return held, Message.get_by_id(sent.id)


def _captured(settings: Settings, ml: MailingList) -> str:
    copy = (f"Return-Path: <{ml.local_part}-bounces+x@{ml.domain.name}>\r\nDelivered-To: a@example.org\r\n"
            f"X-Loop: {ml.address}\r\nList-Id: <{ml.local_part}.{ml.domain.name}>\r\n" + POST.format(to=ml.address, n=9))
    return mail.capture(settings.capture_dir, copy.encode())


def _links(world: World, elodie: Member) -> None:
    settings = world.settings
    member = Member.get_by_id(elodie.id)
    change = email_change.pending_change(settings, member)
    assert change is not None
    world.tokens = {
        "unsubscribe.confirm_page": tokens.make_unsubscribe_token(settings, world.role_list.id, [member.id]),
        "espace.confirm": email_change.confirm_url(settings, change).rsplit("/", 1)[1],
        "espace.cancel": email_change.cancel_url(settings, change).rsplit("/", 1)[1],
        "auth.reset_password": passwords.make_reset_token(settings, member),
        "espace.probe": bounce_member.probe_url(settings, member).rsplit("/", 1)[1],
        "moderation.by_link": moderation.moderation_url(settings, world.held, "moderation@example.org").rsplit("/", 1)[1],
        "post_confirm.by_link": confirmation.confirmation_url(settings, world.waiting).rsplit("/", 1)[1]
        if world.waiting else "",
    }
