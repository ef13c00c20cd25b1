"""Unsubscribe by mail: the ``mailto:`` of List-Unsubscribe (RFC 2369) reaches ``LIST-unsubscribe@``.

The subject holds the recipient's personal token (the same as in the https link): a valid token for
this list unsubscribes the people it names at once. Without one, a mail proves nothing about who
sent it (From and envelope are forged at will), so the address concerned only gets a confirmation
mail with its personal link; the change happens when that link is used, on the portal's unsubscribe
page. Nothing is stored and nothing is sent for an address that is not on the list, and confirmations
are limited per address and per day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses

from engine import notices, tokens
from engine.config import Settings
from engine.directory.models import Member
from engine.lists import optouts
from engine.lists.models import MailingList, Subscription
from engine.lists.resolve import reasons_for_member
from engine.lists.subscribers import valid_address
from engine.tokens import BadToken, load_unsubscribe_token

TOKEN = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)?")
CONFIRMATIONS_PER_ADDRESS_PER_DAY = 3  # across every list: a forger cannot flood one mailbox


@dataclass(frozen=True)
class Result:
    unsubscribed: int = 0  # members or addresses that left at once (a valid token)
    confirmations: int = 0  # confirmation mails sent


def handle(settings: Settings, list_id: int, envelope_sender: str, headers: Message, *,
           may_reply: bool = True) -> Result:
    """A valid token for this list unsubscribes now; otherwise the addresses concerned that are on the
    list get a confirmation link (not when ``may_reply`` is False: an automaton sent the mail)."""
    for candidate in TOKEN.findall(_subject(headers)):
        try:
            if load_unsubscribe_token(settings, candidate).list_id != list_id:
                continue
        except BadToken:
            continue
        outcome = optouts.unsubscribe_with_token(settings, candidate, "mailto")
        return Result(unsubscribed=len(outcome.members) or 1)
    if not may_reply:
        return Result()
    mailing_list = MailingList.get_by_id(list_id)
    sent = sum(_confirm(settings, mailing_list, address) for address in _addresses(headers, envelope_sender))
    return Result(confirmations=sent)


def _subject(headers: Message) -> str:
    try:
        return str(headers.get("Subject", ""))
    except Exception:  # noqa: BLE001 - a header the parser refuses holds no token
        return ""


def _addresses(headers: Message, envelope_sender: str) -> list[str]:
    """The From addresses and the envelope sender, valid ones only, each once."""
    try:
        froms = [str(value) for value in headers.get_all("From", [])]
    except Exception:  # noqa: BLE001 - fall back to the raw values
        froms = [str(value) for name, value in headers.raw_items() if name.lower() == "from"]
    found = [address for _, address in getaddresses([*froms, envelope_sender]) if address]
    valid = [address.lower() for address in found if valid_address(address)]
    return list(dict.fromkeys(valid))


def token_for(settings: Settings, mailing_list: MailingList, address: str) -> str | None:
    """The address's personal unsubscribe token on this list (as its copies carry), None when not on it."""
    members = [member.id for member in Member.using_address(address) if reasons_for_member(mailing_list, member)]
    if members:
        return tokens.make_unsubscribe_token(settings, mailing_list.id, members, email_key=address)
    subscribed = Subscription.select().where((Subscription.mailing_list == mailing_list)
                                             & (Subscription.email_key == address)).exists()
    return tokens.make_unsubscribe_token(settings, mailing_list.id, email_key=address) if subscribed else None


def _confirm(settings: Settings, mailing_list: MailingList, address: str) -> bool:
    """Mail ``address`` its personal link, when it is on the list, still receives it, and has not had
    too many confirmations today; whether a mail went out."""
    token = token_for(settings, mailing_list, address)
    if token is None or optouts.describe_unsubscribe(settings, token).already_out:
        return False
    if not notices.within_daily_limit({f"mailto-unsubscribe:{address}": CONFIRMATIONS_PER_ADDRESS_PER_DAY}):
        return False
    notices.send_notice(settings, "unsubscribe_confirm", address, mailing_list=mailing_list,
                        url=f"{settings.base_url}/u/{token}", sender=notices.list_sender(mailing_list))
    return True
