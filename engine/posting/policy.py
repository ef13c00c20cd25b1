"""Posting policy as data: an ordered table of rules applied to a post's headers and envelope.

The first rule that matches decides: refuse (an SMTP 5xx at DATA, so no bounce is ever sent to a
forged sender), discard (kept for staff to see, never distributed: only what is provably automatic,
bounces and RFC 3834 auto-replies), hold for moderation with the reason, or accept.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message

from engine import clock
from engine.directory.models import EmailChange, Mandate, Member, Structure
from engine.lists.models import ListModerator, MailingList, PostingPermission, PostPolicy, Subscription
from engine.lists.resolve import LOCAL_TIME, reasons_for_member
from engine.posting import headers as inbound
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

    @functools.cached_property
    def from_addresses(self) -> list[str]:
        """The usable From addresses, lower-cased, in order (parsed once per post)."""
        return [address.lower() for address in inbound.addresses(self.headers, "From")]

    @functools.cached_property
    def author(self) -> str:
        """The first usable From address; empty when there is none."""
        return self.from_addresses[0] if self.from_addresses else ""

    @functools.cached_property
    def may_post(self) -> bool:
        """The list's posting policy applied to the From address (computed once per post)."""
        return _may_post(self)


AUTOMATA = re.compile(r"^(mailer-daemon|postmaster|noreply|no-reply|listserv|majordomo|mailman|sympa)@", re.I)


def _loop(post: Post) -> bool:
    address = post.mailing_list.address.lower()
    loops = [v.strip().lower() for v in inbound.texts(post.headers, "X-Loop")]
    list_ids = " ".join(inbound.texts(post.headers, "List-Id")).lower()
    label = f"<{post.mailing_list.local_part}.{post.mailing_list.domain.name}>".lower()
    return address in loops or label in list_ids


def _bounce(post: Post) -> bool:
    """RFC 5321 §4.5.5: a null reverse-path is what makes a bounce (or another notification) provable."""
    return post.envelope_sender in ("", "<>")


def _from_an_automaton(post: Post) -> bool:
    """Mailer daemons and list software write from known names; a person may too, so this only holds."""
    return bool(AUTOMATA.match(post.author or ""))


def is_auto_submitted(message: Message) -> bool:
    """RFC 3834 §5: any Auto-Submitted value but ``no`` marks mail nobody should answer."""
    return inbound.text(message, "Auto-Submitted", "no").split(";")[0].strip().lower() != "no"


# RFC 3834 §2: addresses of list software and mailer daemons, which no automatic response should reach.
AUTOMATED_LOCAL_PARTS = re.compile(r"^(mailer-daemon|postmaster|noreply|no-reply|do-not-reply|donotreply|owner-.*"
                                   r"|.*-request|.*-bounces?(\+.*)?|.*-owner|listserv|majordomo|mailman|sympa)@", re.I)
# RFC 3834 §2 again: mail from a list, or marked bulk, gets no automatic response either.
LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post", "X-Loop")


def looks_automated(envelope_sender: str, message: Message) -> bool:
    """Whether an automatic response (help, confirmation, notice) must not be sent for ``message``
    (RFC 3834 §2): null return path, Auto-Submitted, Precedence bulk/junk/list, list headers, Microsoft's
    X-Auto-Response-Suppress, or a sender or author address of list software or a mailer daemon."""
    if envelope_sender in ("", "<>") or is_auto_submitted(message):
        return True
    if inbound.text(message, "Precedence").lower() in ("bulk", "junk", "list"):
        return True
    if any(inbound.raw_values(message, name) for name in (*LIST_HEADERS, "X-Auto-Response-Suppress")):
        return True
    senders = [envelope_sender, *inbound.addresses(message, "From")]
    return any(AUTOMATED_LOCAL_PARTS.match(address) for address in senders)


def _auto_submitted(post: Post) -> bool:
    return is_auto_submitted(post.headers)


def _bulk(post: Post) -> bool:
    return inbound.text(post.headers, "Precedence").lower() in ("bulk", "junk", "list")


def _malformed(post: Post) -> bool:
    """Not exactly one From field (RFC 5322 §3.6) holding exactly one mailbox. Several authors are legal
    with a Sender (§3.6.2), but copies would go out so on a list that never rewrites From, the posting
    rules would judge the first address only, and providers want one ("From: headers should include only
    one email address", Gmail): refused at DATA, so the author's own server tells them why."""
    return len(inbound.raw_values(post.headers, "From")) != 1 or len(post.from_addresses) != 1


def _from_not_backed_by_envelope(post: Post) -> bool:
    """The From address is what allows the post (a member, a role holder, a moderator…), but the
    envelope sender is none of that person's known addresses: the From may be forged. Lists open to
    anyone are not concerned; a From that inbound authentication (DKIM, SPF) proved is not held."""
    if post.mailing_list.post_policy == PostPolicy.ANYONE or not post.may_post:
        return False
    if post.authentication is not None and post.authentication.authenticated:
        return False  # an aligned DKIM or SPF pass proves more than the envelope could
    return post.envelope_sender.strip().lower() not in known_addresses(post.author)


def known_addresses(address: str) -> set[str]:
    """``address`` and every address of the members who use it: current, confirmed pending or previous
    ones (address changes not cancelled), and their static subscriptions."""
    known = {address.lower()} if address else set()
    members = members_using(address)
    if not members:
        return known
    known |= {member.email_key for member in members if member.email_key}
    changes = EmailChange.select(EmailChange.old_email, EmailChange.new_email).where(
        EmailChange.member.in_(members) & EmailChange.verified_at.is_null(False) & EmailChange.cancelled_at.is_null())
    for change in changes:
        known |= {value.strip().lower() for value in (change.old_email, change.new_email) if value}
    subscriptions = Subscription.select(Subscription.email_key).where(Subscription.member.in_(members))
    known |= {subscription.email_key for subscription in subscriptions}
    return known


def _may_post(post: Post) -> bool:
    """The list's posting policy, applied to the From address."""
    mailing_list, author = post.mailing_list, post.author
    policy = mailing_list.post_policy
    if policy == PostPolicy.ANYONE:  # anyone, moderators included: no query
        return True
    if is_moderator(mailing_list, author):
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
                and post.may_post)
    return matches


Rule = tuple[str, Callable[[Post], bool], str, str]

# The reason stored with a post held because its sender may not post (engine/posting/reasons.py words it for people)
HELD_REASON = "sender not allowed to post: held for moderation"

# (name, matches, action, reply or reason). Order matters: the first match decides.
RULES: tuple[Rule, ...] = (
    ("loop", _loop, Action.REFUSE, "550 5.4.6 Mail loop detected: this message already went through the list"),
    ("malformed", _malformed, Action.REFUSE, "550 5.6.0 The message needs exactly one From header with one address"),
    # Dropped (kept for staff, never distributed) only when provably automatic: our own loop headers
    # are refused above, a null return path and Auto-Submitted here. What merely looks automatic waits.
    ("bounce", _bounce, Action.DISCARD, "bounce (null return path, RFC 5321 §4.5.5) sent to the list address"),
    ("auto-submitted", _auto_submitted, Action.DISCARD, "automatic reply (RFC 3834 Auto-Submitted)"),
    ("automaton", _from_an_automaton, Action.HOLD,
     "From an automaton's address (mailer-daemon, noreply, list software): held for moderation"),
    ("bulk", _bulk, Action.HOLD,
     "marked Precedence: bulk, junk or list (a forward from another list?): held for moderation"),
    # Is the From that allows the post its author's? DKIM/SPF/DMARC when checked, else the envelope.
    ("unauthenticated", _unauthenticated(SenderCheck.HOLD), Action.HOLD,
     "the From address was not authenticated (no aligned DKIM or SPF pass): held for moderation"),
    ("unauthenticated", _unauthenticated(SenderCheck.CONFIRM), Action.CONFIRM,
     "the From address was not authenticated (no aligned DKIM or SPF pass): waiting for its author to confirm"),
    ("envelope", _from_not_backed_by_envelope, Action.HOLD,
     "the From address may post, but the envelope sender is not one of its known addresses "
     "(a forged From?): held for moderation"),
)


def decide(post: Post) -> Decision:
    for name, matches, action, reply in RULES:
        if matches(post):
            return Decision(action, name, reply)
    if post.may_post:
        return Decision(Action.ACCEPT, "posting", "")
    if post.mailing_list.hold_unauthorised:
        return Decision(Action.HOLD, "posting", HELD_REASON)
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
