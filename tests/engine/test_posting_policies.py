"""Every posting policy decides who may post, through ``policy.decide`` and through SMTP to the running engine:
members, roles (in the scope structure, below it, outside it, ended), addresses, moderators only, anyone."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage

import pytest

from engine import clock
from engine.directory.models import Member, Structure, StructureKind
from engine.lists.models import ListModerator, MailingList, PostingPermission, PostPolicy, Subscription
from engine.posting.models import Message, MessageState
from engine.posting.policy import Action, Post, decide
from tests import factories
from tests.engine.conftest import Federation


@dataclass
class People:
    federation: Federation
    regional_instructor: Member  # an instructor mandate in the region itself
    club_instructor: Member  # in a club below the region
    far_instructor: Member  # in a club of another region
    former_instructor: Member  # in the region, mandate ended
    moderator: Member
    owner: Member
    instructor_role_id: int

    def address(self, who: str) -> str:
        found = getattr(self, who, None)
        if isinstance(found, Member):
            return str(found.email)
        return {"board member": str(self.federation.board[0].email), "outsider": str(self.federation.outsider.email),
                "subscriber": "presse@ville-marseille.fr", "permitted address": "Presse@Ville-Marseille.FR",
                "moderator address": "moderation@example.fr", "stranger": "stranger@nowhere.example"}[who]


@pytest.fixture
def people(federation: Federation) -> People:
    instructor = factories.role("moniteur", "Moniteur")
    elsewhere = factories.structure("Comité régional Bretagne", kind=StructureKind.REGIONAL,
                                    parent=federation.region.parent)
    far_club = factories.structure("Club de Brest", kind=StructureKind.CLUB, parent=elsewhere)
    regional = factories.member("Rémi", "Régional", email="remi@example.fr", club=federation.club)
    in_club = factories.member("Chloé", "Club", email="chloe@example.fr", club=federation.club)
    far = factories.member("Yann", "Loin", email="yann@example.fr", club=far_club)
    former = factories.member("Ancien", "Moniteur", email="ancien@example.fr", club=federation.club)
    factories.mandate(regional, instructor, federation.region)
    factories.mandate(in_club, instructor, federation.club)
    factories.mandate(far, instructor, far_club)
    factories.mandate(former, instructor, federation.region, starts_on=date(2020, 1, 1), ends_on=date(2024, 6, 30))
    moderator = factories.member("Modeste", "Rateur", email="modeste@example.fr", club=federation.other_club)
    owner = factories.member("Olivia", "Propriétaire", email="olivia@example.fr", club=federation.other_club)
    return People(federation, regional, in_club, far, former, moderator, owner, instructor.id)


def _members(ml: MailingList, people: People) -> None:
    ml.post_policy = PostPolicy.MEMBERS
    Subscription.create(mailing_list=ml, email="presse@ville-marseille.fr", email_key="presse@ville-marseille.fr",
                        created_at=clock.now())


def _roles_in(scope: Callable[[People], Structure | None]) -> Callable[[MailingList, People], None]:
    def configure(ml: MailingList, people: People) -> None:
        ml.post_policy = PostPolicy.ROLES
        PostingPermission.create(mailing_list=ml, role=people.instructor_role_id, structure=scope(people))
    return configure


def _addresses(ml: MailingList, people: People) -> None:
    ml.post_policy = PostPolicy.ADDRESSES
    PostingPermission.create(mailing_list=ml, email_key="presse@ville-marseille.fr")


def _moderators(ml: MailingList, people: People) -> None:
    ml.post_policy = PostPolicy.MODERATORS
    ListModerator.create(mailing_list=ml, member=people.moderator)
    ListModerator.create(mailing_list=ml, email="Moderation@Example.fr")
    ml.owner = people.owner


def _anyone(ml: MailingList, people: People) -> None:
    ml.post_policy = PostPolicy.ANYONE


REGION = _roles_in(lambda p: p.federation.region)  # holders in the region and every structure below it
ANYWHERE = _roles_in(lambda p: None)  # holders of the role in any structure
CASES = [
    ("members", _members, "board member", Action.ACCEPT),
    ("members", _members, "subscriber", Action.ACCEPT),
    ("members", _members, "outsider", Action.HOLD),
    ("roles in the region", REGION, "regional_instructor", Action.ACCEPT),
    ("roles in the region", REGION, "club_instructor", Action.ACCEPT),  # a sub-structure of the region
    ("roles in the region", REGION, "far_instructor", Action.HOLD),  # another region
    ("roles in the region", REGION, "former_instructor", Action.HOLD),  # the mandate ended
    ("roles in the region", REGION, "board member", Action.HOLD),  # on the list, without the role
    ("roles anywhere", ANYWHERE, "far_instructor", Action.ACCEPT),
    ("roles anywhere", ANYWHERE, "former_instructor", Action.HOLD),
    ("addresses", _addresses, "permitted address", Action.ACCEPT),  # compared case-insensitively
    ("addresses", _addresses, "board member", Action.HOLD),
    ("moderators only", _moderators, "moderator", Action.ACCEPT),
    ("moderators only", _moderators, "moderator address", Action.ACCEPT),
    ("moderators only", _moderators, "owner", Action.ACCEPT),
    ("moderators only", _moderators, "board member", Action.HOLD),
    ("anyone", _anyone, "stranger", Action.ACCEPT),
    ("anyone", _anyone, "outsider", Action.ACCEPT),
]
IDS = [f"{policy}: {who}" for policy, _c, who, _a in CASES]


def _post(author: str, ml: MailingList) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = author, ml.address, "Sortie du dimanche"
    message.set_content("Bonjour à tous\n")
    return message


def _configured(people: People, configure: Callable[[MailingList, People], None], hold: bool) -> MailingList:
    ml = people.federation.board_list
    configure(ml, people)
    ml.hold_unauthorised = hold
    ml.save()
    return MailingList.get_by_id(ml.id)


def _holding(ml: MailingList, hold: bool) -> MailingList:
    MailingList.update(hold_unauthorised=hold).where(MailingList.id == ml.id).execute()
    return MailingList.get_by_id(ml.id)


@pytest.mark.parametrize(("policy", "configure", "who", "expected"), CASES, ids=IDS)
def test_policy_decide(people: People, policy: str, configure: Callable[[MailingList, People], None], who: str,
                       expected: str) -> None:
    ml = _configured(people, configure, hold=True)
    author = people.address(who)
    decision = decide(Post(ml, author, _post(author, ml)))
    assert (decision.action, decision.rule) == (expected, "posting")
    refusing = _holding(ml, False)
    decision = decide(Post(refusing, author, _post(author, refusing)))
    assert decision.action == (Action.ACCEPT if expected == Action.ACCEPT else Action.REFUSE)


@pytest.mark.parametrize(("policy", "configure", "who", "expected"), CASES, ids=IDS)
def test_policy_over_smtp(start_engine, people: People, policy: str,  # type: ignore[no-untyped-def]
                          configure: Callable[[MailingList, People], None], who: str, expected: str) -> None:
    ml = _configured(people, configure, hold=expected == Action.HOLD)
    author = people.address(who)
    engine = start_engine()
    host, port = engine.bound["smtp"]
    with smtplib.SMTP(host, port) as client:
        if expected == Action.HOLD:
            assert client.send_message(_post(author, ml), from_addr=author, to_addrs=[ml.address]) == {}
            assert Message.get().state == MessageState.HELD
            # the same post to the list when it refuses instead of holding
            _holding(ml, False)
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.send_message(_post(author, ml), from_addr=author, to_addrs=[ml.address])
            assert refused.value.smtp_code == 550 and b"not allowed" in refused.value.smtp_error
            assert Message.select().count() == 1
        else:
            assert client.send_message(_post(author, ml), from_addr=author, to_addrs=[ml.address]) == {}
            assert Message.get().state not in (MessageState.HELD, MessageState.REJECTED, MessageState.DISCARDED)
