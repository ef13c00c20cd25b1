"""Posting policy as data: an ordered table of rules applied to a post's headers and envelope.

The first rule that matches decides: refuse (an SMTP 5xx at DATA, so no bounce is ever sent to a
forged sender), discard (kept for staff to see, never distributed: bounces and auto-replies, RFC
3834), hold for moderation, or accept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from engine import clock
from engine.directory.models import Mandate, Member, Structure
from engine.lists.models import ListModerator, MailingList, PostingPermission, PostPolicy, Subscription
from engine.lists.resolve import LOCAL_TIME, reasons_for_member
from engine.posting.authentication import Outcome


class SenderCheck:
    """What a list does with an allowed From that failed authentication (``MailingList.sender_check``)."""

    HOLD = "hold"
    CONFIRM = "confirm"
    OFF = "off"
    ALL = (HOLD, CONFIRM, OFF)


class Action:
    ACCEPT = "accept"
    HOLD = "hold"
    CONFIRM = "confirm"  # held until its author confirms by a signed link mailed to the From address
    REFUSE = "refuse"
    DISCARD = "discard"


@dataclass(frozen=True)
class Decision:
    action: str
    rule: str
    reply: str  # the SMTP reply for a refusal; the reason shown to staff otherwise


@dataclass(frozen=True)
class Post:
    """What the rules look at: the list, the envelope sender and the parsed headers."""

    mailing_list: MailingList
    envelope_sender: str
    headers: Message
    authentication: Outcome | None = None  # None: not checked (PALANQUEE_INBOUND_AUTHENTICATION=off)

    @property
    def author(self) -> str:
        """The From address (the first one), lower-cased; empty when there is none."""
        found = [addr for _, addr in getaddresses(self.headers.get_all("From", [])) if addr]
        return found[0].lower() if found else ""


AUTOMATA = re.compile(r"^(mailer-daemon|postmaster|noreply|no-reply|listserv|majordomo|mailman|sympa)@", re.I)


def _loop(post: Post) -> bool:
    address = post.mailing_list.address.lower()
    loops = [v.strip().lower() for v in post.headers.get_all("X-Loop", [])]
    list_ids = " ".join(post.headers.get_all("List-Id", [])).lower()
    label = f"<{post.mailing_list.local_part}.{post.mailing_list.domain.name}>".lower()
    return address in loops or label in list_ids


def _bounce(post: Post) -> bool:
    # RFC 5321 §4.5.5: bounces have a null reverse-path; mailer daemons send from known names.
    return post.envelope_sender in ("", "<>") or bool(AUTOMATA.match(post.author or ""))


def is_auto_submitted(headers: Message) -> bool:
    """RFC 3834 §5: any Auto-Submitted value but ``no`` marks mail nobody should answer."""
    return str(headers.get("Auto-Submitted", "no")).split(";")[0].strip().lower() != "no"


def _auto_submitted(post: Post) -> bool:
    return is_auto_submitted(post.headers)


def _bulk(post: Post) -> bool:
    return str(post.headers.get("Precedence", "")).strip().lower() in ("bulk", "junk", "list")


def _malformed(post: Post) -> bool:
    froms = post.headers.get_all("From", [])
    return len(froms) != 1 or not post.author


def _may_post(post: Post) -> bool:
    """The list's posting policy, applied to the From address."""
    mailing_list, author = post.mailing_list, post.author
    if is_moderator(mailing_list, author):
        return True
    policy = mailing_list.post_policy
    if policy == PostPolicy.ANYONE:
        return True
    if policy == PostPolicy.MEMBERS:
        return is_on_list(mailing_list, author)
    if policy == PostPolicy.ADDRESSES:
        return PostingPermission.select().where(
            (PostingPermission.mailing_list == mailing_list) & (PostingPermission.email_key == author)).exists()
    if policy == PostPolicy.ROLES:
        return holds_posting_role(mailing_list, author)
    return False  # MODERATORS: announce list


def _unauthenticated(check: str) -> Callable[[Post], bool]:
    """A post that would be allowed by its From address, whose From the inbound DKIM/SPF/DMARC did not
    authenticate (authentication.py), on a list that chose ``check`` (hold or confirm) for such posts."""
    def matches(post: Post) -> bool:
        mailing_list = post.mailing_list
        return (post.authentication is not None and mailing_list.sender_check == check
                and mailing_list.post_policy != PostPolicy.ANYONE and not post.authentication.authenticated
                and _may_post(post))
    return matches


Rule = tuple[str, Callable[[Post], bool], str, str]

# (name, matches, action, reply or reason). Order matters: the first match decides.
RULES: tuple[Rule, ...] = (
    ("loop", _loop, Action.REFUSE, "550 5.4.6 Mail loop detected: this message already went through the list"),
    ("malformed", _malformed, Action.REFUSE, "550 5.6.0 The message needs exactly one From address"),
    ("bounce", _bounce, Action.DISCARD, "bounce or message from an automaton sent to the list address"),
    ("auto-submitted", _auto_submitted, Action.DISCARD, "automatic reply (RFC 3834 Auto-Submitted)"),
    ("bulk", _bulk, Action.DISCARD, "bulk or list mail (Precedence) sent to the list address"),
    ("unauthenticated", _unauthenticated(SenderCheck.HOLD), Action.HOLD,
     "the From address was not authenticated (no aligned DKIM or SPF pass): held for moderation"),
    ("unauthenticated", _unauthenticated(SenderCheck.CONFIRM), Action.CONFIRM,
     "the From address was not authenticated (no aligned DKIM or SPF pass): waiting for its author to confirm"),
)


def decide(post: Post) -> Decision:
    for name, matches, action, reply in RULES:
        if matches(post):
            return Decision(action, name, reply)
    if _may_post(post):
        return Decision(Action.ACCEPT, "posting", "")
    if post.mailing_list.hold_unauthorised:
        return Decision(Action.HOLD, "posting", "sender not allowed to post: held for moderation")
    return Decision(Action.REFUSE, "posting",
                    f"550 5.7.1 You are not allowed to post to {post.mailing_list.address}")


def members_using(address: str) -> list[Member]:
    return list(Member.using_address(address)) if address else []


def is_on_list(mailing_list: MailingList, address: str) -> bool:
    """Whether ``address`` belongs to someone the list reaches (static subscriber or by a criterion)."""
    if not address:
        return False
    if Subscription.select().where((Subscription.mailing_list == mailing_list)
                                   & (Subscription.email_key == address.lower())).exists():
        return True
    return any(reasons_for_member(mailing_list, member) for member in members_using(address))


def is_moderator(mailing_list: MailingList, address: str) -> bool:
    if not address:
        return False
    ids = [member.id for member in members_using(address)]
    if mailing_list.owner_id is not None and mailing_list.owner_id in ids:
        return True
    query = ListModerator.select().where(ListModerator.mailing_list == mailing_list)
    return any((m.member_id in ids) or (m.email or "").lower() == address for m in query)


def holds_posting_role(mailing_list: MailingList, address: str) -> bool:
    today = clock.today(LOCAL_TIME)
    members = members_using(address)
    if not members:
        return False
    permissions = PostingPermission.select().where(
        (PostingPermission.mailing_list == mailing_list) & PostingPermission.role.is_null(False))
    for permission in permissions:
        mandates = Mandate.select(Mandate, Structure).join(Structure).where(
            Mandate.current(today) & Mandate.member.in_(members) & (Mandate.role == permission.role_id))
        for mandate in mandates:
            scope = permission.structure
            if scope is None or mandate.structure.is_within(scope):
                return True
    return False
