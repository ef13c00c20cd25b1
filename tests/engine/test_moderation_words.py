"""The moderators' mail speaks each moderator's language (the held reason too), and each moderator's link names
them, so that a decision taken through it is logged as theirs."""

from __future__ import annotations

import re

from engine import clock
from engine.audit import AuditEvent
from engine.directory.models import StructureKind
from engine.lists.models import ListModerator
from engine.outbound.mail import read_captured
from engine.posting import moderation, policy, reasons
from engine.posting.models import Message, MessageState
from tests import factories as f

RAW = b"From: paul@example.org\r\nSubject: Sortie\r\n\r\nBonjour\r\n"


def test_each_moderator_reads_the_reason_in_their_language_and_decides_as_themselves(settings, db):
    fed = f.structure("FFESSM", StructureKind.FEDERATION)
    ml = f.mailing_list("bureau", f.domain(structure=fed), fed, name="Bureau")
    anna = f.member(first_name="Anna", email="anna@example.org", language="en")
    ListModerator.create(mailing_list=ml, member=anna)
    ListModerator.create(mailing_list=ml, email="secretariat@example.org")
    held = Message.create(mailing_list=ml, author="paul@example.org", envelope_sender="paul@example.org",
                          subject="Sortie", content=RAW, size=len(RAW), state=MessageState.HELD,
                          reason=policy.HELD_REASON, received_at=clock.now())
    moderation.request(settings, held)
    mails = {m["To"]: m for m in read_captured(settings.capture_dir)}
    english, french = mails["anna@example.org"].get_content(), mails["secretariat@example.org"].get_content()
    assert "Reason: the sender is not allowed to post to this list: message held for moderation" in english
    assert "Raison : l’expéditeur n’est pas autorisé à écrire à cette liste" in french
    assert policy.HELD_REASON not in english + french
    token = re.search(r"/moderation/([^?\s]+)\?decision=approve", english).group(1)
    link = moderation.moderation_link(settings, token)
    assert (link.message.id, link.moderator) == (held.id, "anna@example.org")
    moderation.approve(settings, link.message, None, via=link.moderator)
    event = AuditEvent.get(AuditEvent.action == "message.approved")
    assert (event.actor_id, event.actor_label) == (anna.id, "")  # not "system"
    assert Message.get_by_id(held.id).decided_by_id == anna.id


def test_a_link_to_an_address_no_member_uses_names_that_address(settings, db):
    fed = f.structure("FFESSM", StructureKind.FEDERATION)
    ml = f.mailing_list("bureau", f.domain(structure=fed), fed)
    held = Message.create(mailing_list=ml, author="paul@example.org", subject="Sortie", content=RAW, size=len(RAW),
                          state=MessageState.HELD, reason=policy.HELD_REASON, received_at=clock.now())
    token = moderation.moderation_url(settings, held, "secretariat@example.org").rsplit("/", 1)[1]
    link = moderation.moderation_link(settings, token)
    moderation.reject(settings, link.message, None, "Hors sujet", via=link.moderator)
    event = AuditEvent.get(AuditEvent.action == "message.rejected")
    assert (event.actor_id, event.actor_label) == (None, "secretariat@example.org")
    older = moderation.moderation_url(settings, held).rsplit("/", 1)[1]  # links mailed before: no moderator
    assert moderation.moderation_link(settings, older).moderator == ""


def test_every_reason_the_rules_give_has_words_in_both_languages():
    given = {policy.HELD_REASON} | {reply for _name, _test, action, reply in policy.RULES
                                    if action != policy.Action.REFUSE}
    for reason in given:
        words = reasons.REASONS.get(reason, {})
        assert words.get("fr") and words.get("en") and words["fr"] != words["en"], reason
    assert reasons.reason_words("Hors sujet", "en") == "Hors sujet"  # typed by a moderator: as typed
