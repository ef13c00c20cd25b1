"""The welcome notice of a plain list's new subscriber typed by staff (DELIVERABILITY.md §9.4).

Someone whose address staff typed into a plain (static) list learns at once which list it is, which
structure put them there, what they will receive, and how to leave in one click: the same personal signed
token as the list's copies, in the body and in List-Unsubscribe (RFC 2369, RFC 8058), so that leaving
works without an account. Sent through the notices (``engine.notices``) with their daily limits (``LIMITS``):
at most ``PER_LIST_PER_DAY`` welcomes a list a day, one per address and list a day, ``PER_ADDRESS_PER_DAY``
per address over all lists; past them an address simply gets no welcome (it is subscribed all the same).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import audit, notices
from engine.config import Settings
from engine.directory.models import Member
from engine.lists.mailto_unsubscribe import token_for
from engine.lists.models import ListKind, MailingList, PostPolicy

PER_LIST_PER_DAY = 200  # a paste of 5,000 addresses sends 200 welcomes, not 5,000
PER_ADDRESS_PER_DAY = 5  # over every list: staff of several structures cannot bury one mailbox


@dataclass(frozen=True)
class Welcomed:
    sent: int = 0
    skipped: int = 0  # new addresses without a welcome: left the list before, or past a daily limit


def limits(ml: MailingList, key: str) -> dict[str, int]:
    """The notices' daily keys of one welcome (policy as data)."""
    return {f"welcome-list:{ml.id}": PER_LIST_PER_DAY, f"welcome:{ml.id}:{key}": 1,
            f"welcome-address:{key}": PER_ADDRESS_PER_DAY}


def welcome_new(settings: Settings, actor: Member | None, ml: MailingList, new: dict[str, str],
                opted_out: list[str] | tuple[str, ...] = (), *, ip: str | None = None) -> Welcomed:
    """Mail each address of ``new`` (by key: the addresses a staff change subscribed) its welcome.

    Only plain lists welcome (a role list's members are there by their licence, and were told so). An
    address that left this list before (``opted_out``) is not welcomed: it stays out and must not hear from
    a list it left. Call after the change is committed: the mail goes out now, through the notices' path.
    """
    if ml.kind != ListKind.STATIC or not new:
        return Welcomed()
    out = set(opted_out)
    sent = skipped = 0
    for key, address in new.items():
        token = None if key in out else token_for(settings, ml, key)
        if token is None or not notices.within_daily_limit(limits(ml, key)):
            skipped += 1
            continue
        _send(settings, ml, address, f"{settings.base_url}/u/{token}")
        sent += 1
    audit.record("list.subscribers_welcomed", ml, actor=actor, structure_id=ml.structure_id, ip=ip,
                 sent=sent, skipped=skipped)
    return Welcomed(sent, skipped)


def _send(settings: Settings, ml: MailingList, address: str, url: str) -> None:
    headers = {"List-Id": f"<{ml.local_part}.{ml.domain.name}>",
               "List-Unsubscribe": f"<{url}>",
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}  # RFC 8058 §3.1
    notices.send_notice(settings, "list_welcome", address, mailing_list=ml, structure=ml.structure, url=url,
                        discussion=ml.post_policy in (PostPolicy.MEMBERS, PostPolicy.ANYONE), headers=headers,
                        sender=notices.list_sender(ml))
